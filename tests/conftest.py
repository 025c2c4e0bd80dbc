"""Shared test fixtures: small data the tests make, and the real data if present."""

import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / 'shared'
SHARED_TFDS = SHARED / 'tensorflow_datasets'


@pytest.fixture
def shared_tfds_dir():
  """The prepared TFDS dir in ../shared, or skip where it does not exist."""
  if not (SHARED_TFDS / 'mnist').is_dir():
    pytest.skip('../shared/tensorflow_datasets/mnist not present')
  return str(SHARED_TFDS)


@pytest.fixture
def repo_root():
  return ROOT


def subprocess_env(**extra):
  """Environment for CLI subprocesses: repo on PYTHONPATH, quiet TF logs."""
  env = dict(os.environ)
  env['PYTHONPATH'] = str(ROOT) + os.pathsep + env.get('PYTHONPATH', '')
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
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
