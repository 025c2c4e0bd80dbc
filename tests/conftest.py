"""Shared test fixtures: small data the tests make, and the real data if present."""

import os
import pathlib
import shutil
import sys
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / 'shared'
SHARED_TFDS = SHARED / 'tensorflow_datasets'

# The suite's cost is XLA compiling the same programs again: in every
# train.py / evaluate.py subprocess, in both xdist workers, in tests that
# build the same networks. One JAX persistent compilation cache per pytest
# session, made here (before JAX reads its config) and inherited by the xdist
# workers and by every subprocess (`subprocess_env`), compiles each program
# once. A cache entry is keyed by the program and the compiler options, so a
# hit returns the executable a compile would have made. A cache dir set by
# the caller (e.g. tools/mutation.sh) is kept.
_OWN_CACHE = None
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _OWN_CACHE = tempfile.mkdtemp(prefix='lanjax_test_jax_cache_')
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _OWN_CACHE
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '-1')
  if 'jax' in sys.modules:  # imported by a plugin before this file
    sys.modules['jax'].config.update('jax_compilation_cache_dir', _OWN_CACHE)


# The same cost, compile time, once more: most tests run their programs on a
# few examples, once, so LLVM's optimisation of the CPU code XLA emits costs
# more than it saves (a quick end-to-end experiment ran in 36 s instead of
# 66 s at level 0). It changes how fast the emitted loops run, not what they
# compute: convolutions and matrix products still go to their libraries,
# fusion is unchanged, and so is compiled memory (Pong's LAN step at K = 256:
# the same temporaries at both levels). The benchmark's subprocess, which
# times what users get, runs at XLA's default
# (`subprocess_env(xla_defaults=True)`), as do CLI runs outside pytest. A
# level set by the caller is kept; other subprocesses inherit it
# (`subprocess_env`).
_TEST_XLA_FLAG = '--xla_backend_optimization_level=0'
if 'xla_backend_optimization_level' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' '
                             + _TEST_XLA_FLAG).strip()


def pytest_unconfigure(config):
  """Removes the session's compilation cache (the process that made it)."""
  del config
  if _OWN_CACHE is not None and 'PYTEST_XDIST_WORKER' not in os.environ:
    shutil.rmtree(_OWN_CACHE, ignore_errors=True)


@pytest.fixture
def shared_tfds_dir():
  """The prepared TFDS dir in ../shared, or skip where it does not exist."""
  if not (SHARED_TFDS / 'mnist').is_dir():
    pytest.skip('../shared/tensorflow_datasets/mnist not present')
  return str(SHARED_TFDS)


@pytest.fixture
def repo_root():
  return ROOT


def subprocess_env(*, xla_defaults: bool = False, **extra):
  """Environment for CLI subprocesses: repo on PYTHONPATH, quiet TF logs.

  ``xla_defaults``: without the session's `_TEST_XLA_FLAG`, for processes
  that time what users get (the benchmark).
  """
  env = dict(os.environ)
  if xla_defaults:
    env['XLA_FLAGS'] = ' '.join(f for f in env.get('XLA_FLAGS', '').split()
                                if f != _TEST_XLA_FLAG)
  env['PYTHONPATH'] = str(ROOT) + os.pathsep + env.get('PYTHONPATH', '')
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  if 'XLA_FLAGS' in extra:  # the test's flags, with the session's (above)
    extra = {**extra, 'XLA_FLAGS': ' '.join(
        f for f in (env.get('XLA_FLAGS'), extra['XLA_FLAGS']) if f)}
  env.update(extra)
  return env


def load_config(name: str, arg=None):
  """``configs/<name>.py``'s ``get_config(arg)``, loaded by path."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location(
      f'configs_{name}', ROOT / 'configs' / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)
