"""Runs that lose nothing: kill and resume, damaged checkpoints, NaN stops, atomic files.

The end-to-end test SIGKILLs a real ``train.py`` (translated MNIST, quick
config with a handful of steps) during F's training and during A's, restarts
the same command each time and checks the final parameters and logs are
bitwise those of an uninterrupted run. The other tests use a toy regression
in-process.
"""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from conftest import ROOT, load_config, subprocess_env
from lanjax import io
from lanjax import training

matplotlib.use('Agg')

# Reading a damaged checkpoint leaves orbax coroutines that fail after the
# restore has already raised; their "exception ignored" reports are expected.
pytestmark = pytest.mark.filterwarnings(
    'ignore::pytest.PytestUnraisableExceptionWarning')


# ----------------------------------------------------------------------------
# Helpers.


def _path(path):
  """A pytree path written the same way for a state and its raw restore."""
  return '/'.join(str(getattr(k, 'key', getattr(k, 'idx', getattr(
      k, 'name', k)))) for k in path)


def _leaves_bytes(tree):
  """Path -> (dtype, shape, raw bytes) of every array leaf."""
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {_path(p): (np.asarray(v).dtype, np.shape(v), np.asarray(v).tobytes())
          for p, v in flat}


def _assert_bitwise_equal(a, b):
  la, lb = _leaves_bytes(a), _leaves_bytes(b)
  assert la.keys() == lb.keys()
  differ = [k for k in la if la[k] != lb[k]]
  assert not differ, f'arrays differ: {differ}'


def _records(path):
  """The JSON-lines records of a metrics file, without wall-clock rates."""
  with open(path) as fh:
    recs = [json.loads(line) for line in fh]
  for r in recs:
    r.pop('steps_per_sec', None)
  return recs


def _restore_raw(directory, step):
  checkpointer = ocp.StandardCheckpointer()
  try:
    return checkpointer.restore(os.path.join(directory, str(step), 'default'))
  finally:
    checkpointer.close()


# ----------------------------------------------------------------------------
# SIGKILL a real train.py and resume it.

_TRAIN_ARGS = [
    '--config', 'configs/translated_mnist.py:quick',
    '--config.domains=standard', '--config.f.num_steps=40',
    '--config.lan.num_steps=30', '--config.log_every=5',
    '--config.checkpoint_every=10', '--config.f.eval_every=20',
    '--config.evaluate_after_train=False', '--config.data.train_limit=1000',
    '--config.data.test_limit=200', '--config.eval.num_examples=200',
]


def _train(workdir, env, kill_when=None, timeout=300):
  """Runs train.py; SIGKILLs it at the first stdout line ``kill_when`` accepts.

  Returns:
    ``(returncode, output, killed)``.
  """
  proc = subprocess.Popen(
      [sys.executable, 'train.py', *_TRAIN_ARGS, f'--workdir={workdir}'],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True)
  watchdog = threading.Timer(timeout, proc.kill)
  watchdog.start()
  lines, killed = [], False
  try:
    for line in proc.stdout:
      lines.append(line)
      if kill_when is not None and kill_when(line):
        os.kill(proc.pid, signal.SIGKILL)
        killed = True
        break
    proc.wait()
  finally:
    watchdog.cancel()
    proc.stdout.close()
  return proc.returncode, ''.join(lines), killed


def _resumed_from(name, output):
  m = re.search(rf'\[{name}\] resuming from checkpoint at step (\d+)', output)
  return int(m.group(1)) if m else None


@pytest.mark.slow
def test_sigkill_during_f_and_during_lan_resumes_bitwise(tmp_path,
                                                         shared_tfds_dir):
  # A persistent compilation cache: the reference run compiles, the restarts
  # load its executables (the same code), which halves the test's runtime.
  env = subprocess_env(
      TFDS_DATA_DIR=shared_tfds_dir,
      JAX_COMPILATION_CACHE_DIR=str(tmp_path / 'jax_cache'),
      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
      JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0')
  ref, run = tmp_path / 'ref', tmp_path / 'run'

  rc, out, _ = _train(ref, env)
  assert rc == 0, out

  # 1. SIGKILL while F trains, between checkpoints 10 and 20.
  rc, out, killed = _train(run, env, lambda l: l.startswith('[f] step 15/40'))
  assert killed and rc == -signal.SIGKILL, out
  assert not os.path.exists(run / 'standard' / 'checkpoints' / 'lan')

  # 2. Same command: F resumes; SIGKILL while A trains, as checkpoint 20 is
  # being written.
  rc, out, killed = _train(run, env,
                           lambda l: l.startswith('[lan] step 20/30'))
  assert killed and rc == -signal.SIGKILL, out
  assert _resumed_from('f', out) in (10, 20), out

  # 3. Same command again: F is done, A resumes and finishes.
  rc, out, _ = _train(run, env)
  assert rc == 0, out
  assert _resumed_from('f', out) == 40, out
  assert _resumed_from('lan', out) in (10, 20), out

  for name, last in (('f', 40), ('lan', 30)):
    ck_ref = ref / 'standard' / 'checkpoints' / name
    ck_run = run / 'standard' / 'checkpoints' / name
    assert not glob.glob(str(ck_run / '*tmp*'))
    _assert_bitwise_equal(_restore_raw(ck_ref, last), _restore_raw(ck_run, last))
    # The logs hold each step once, with the same values.
    assert (_records(ref / 'standard' / f'metrics_{name}.jsonl')
            == _records(run / 'standard' / f'metrics_{name}.jsonl'))


# ----------------------------------------------------------------------------
# A toy regression trained in-process with `training.fit`.

_TX = optax.adam(0.05)
_DATA = {'x': jax.random.normal(jax.random.key(1), (64, 3))}
_DATA['y'] = _DATA['x'] @ jnp.array([1., -2., .5]) + 0.3


def _toy_update(nan_at_step=None):
  def update(state, data, key):
    idx = jax.random.randint(key, (8,), 0, data['x'].shape[0])
    x, y = data['x'][idx], data['y'][idx]

    def loss_fn(p):
      loss = jnp.mean((x @ p['w'] + p['b'] - y) ** 2)
      if nan_at_step is not None:  # loss and gradients NaN at that step
        loss = loss * jnp.where(state['step'] == nan_at_step, jnp.nan, 1.)
      return loss

    loss, grads = jax.value_and_grad(loss_fn)(state['params'])
    state, finite = training.apply_gradients(state, grads, loss, _TX)
    return state, {'loss': loss, 'finite': finite}
  return update


def _toy_state():
  return training.init_state({'w': jnp.zeros(3), 'b': jnp.zeros(())}, _TX)


def _fit(workdir, num_steps, update=None, data=None, **kwargs):
  kwargs = {'log_every': 5, 'checkpoint_every': 10, **kwargs}
  return training.fit(update or _toy_update(), _toy_state(),
                      _DATA if data is None else data,
                      rng=jax.random.key(0), num_steps=num_steps,
                      workdir=str(workdir), name='toy', tensorboard=False,
                      **kwargs)


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """An uninterrupted 30-step run: (final state, its log records)."""
  workdir = tmp_path_factory.mktemp('reference')
  state = _fit(workdir, 30)
  return state, _records(workdir / 'metrics_toy.jsonl')


class _Interrupt(Exception):
  pass


@pytest.mark.xdist_group('test_reliability.reference')  # the fixture runs once
def test_interrupted_fit_resumes_to_same_params_and_log(tmp_path, reference):
  def interrupt_at_25(state):
    if int(state['step']) == 25:
      raise _Interrupt
    return {}

  with pytest.raises(_Interrupt):
    _fit(tmp_path, 30, eval_fn=interrupt_at_25, eval_every=5)
  log = tmp_path / 'metrics_toy.jsonl'
  assert [r['step'] for r in _records(log)] == [5, 10, 15, 20, 25]
  with open(log, 'a') as fh:  # a line cut short by a kill
    fh.write('{"step": 30, "lo')

  state = _fit(tmp_path, 30)
  _assert_bitwise_equal(state, reference[0])
  assert _records(log) == reference[1]  # steps 25.. logged once, no debris


def test_interrupted_windowed_fit_resumes_across_window_boundaries(tmp_path):
  """Windows of 24 of the 64 examples, 3 steps each (the last one wrapped):
  the checkpoint at step 20 is inside a window (steps 18-20), the resumed
  run crosses the boundaries at 21, 24 and 27. Its result is bitwise the
  uninterrupted run's only if the window follows the step, not a count of
  the windows this process has read."""
  def windows():
    read = lambda idx: jax.tree.map(lambda v: np.asarray(v)[idx], _DATA)
    return training.Windows(read=read, num_examples=64, size=24).for_batch(8)

  ref = _fit(tmp_path / 'ref', 30, data=windows())

  def interrupt_at_25(state):
    if int(state['step']) == 25:
      raise _Interrupt
    return {}

  with pytest.raises(_Interrupt):
    _fit(tmp_path / 'run', 30, data=windows(), eval_fn=interrupt_at_25,
         eval_every=5)
  state = _fit(tmp_path / 'run', 30, data=windows())
  _assert_bitwise_equal(state, ref)
  assert (_records(tmp_path / 'run' / 'metrics_toy.jsonl')
          == _records(tmp_path / 'ref' / 'metrics_toy.jsonl'))
  # The windows matter: the in-memory run is another run.
  with pytest.raises(AssertionError):
    _assert_bitwise_equal(state, _fit(tmp_path / 'mem', 30))


def _ckpt(workdir, step=None):
  d = os.path.join(workdir, 'checkpoints', 'toy')
  return d if step is None else os.path.join(d, str(step))


def _truncate_all(step_dir):
  for root, _, files in os.walk(os.path.join(step_dir, 'default')):
    for f in files:
      p = os.path.join(root, f)
      with open(p, 'r+b') as fh:
        fh.truncate(os.path.getsize(p) // 2)


def _zero_data(step_dir):
  files = glob.glob(os.path.join(step_dir, 'default', '**', 'd', '*'),
                    recursive=True)
  assert files
  for p in files:
    size = os.path.getsize(p)
    with open(p, 'r+b') as fh:
      fh.seek(size // 3)
      fh.write(b'\0' * (size - size // 3))


def _remove_item(step_dir):
  shutil.rmtree(os.path.join(step_dir, 'default'))


@pytest.mark.parametrize('damage', [_truncate_all, _zero_data, _remove_item])
def test_damaged_latest_checkpoint_falls_back_to_previous(tmp_path, capsys,
                                                          reference, damage):
  _fit(tmp_path, 20)  # checkpoints 10 and 20
  damage(_ckpt(tmp_path, 20))
  capsys.readouterr()

  state = _fit(tmp_path, 30)
  out = capsys.readouterr().out
  assert re.search(r'WARNING: checkpoint 20 of \[toy\] in .* cannot be read',
                   out), out
  assert 'resuming from checkpoint at step 10' in out
  _assert_bitwise_equal(state, reference[0])
  # The damaged step was written again, readable.
  manager = training.checkpoint_manager(_ckpt(tmp_path))
  restored, step = training.restore_latest(manager, _toy_state())
  manager.close()
  assert step == 30
  _assert_bitwise_equal(restored, reference[0])
  assert os.path.exists(os.path.join(_ckpt(tmp_path, 20), 'default'))


def test_restore_latest_skips_unreadable_and_returns_previous(tmp_path):
  _fit(tmp_path, 20)
  expected = _restore_raw(_ckpt(tmp_path), 10)
  _truncate_all(_ckpt(tmp_path, 20))
  manager = training.checkpoint_manager(_ckpt(tmp_path))
  state, step = training.restore_latest(manager, _toy_state())
  assert step == 10 and manager.all_steps() == [10]
  manager.close()
  _assert_bitwise_equal(state, expected)


@pytest.mark.xdist_group('test_reliability.reference')  # the fixture runs once
def test_leftover_orbax_tmp_dir_is_ignored_and_removed(tmp_path, reference):
  _fit(tmp_path, 20)
  # A save of step 30 cut short by a kill: orbax's temporary directory.
  tmp = _ckpt(tmp_path) + '/30.orbax-checkpoint-tmp-1700000000000000'
  shutil.copytree(_ckpt(tmp_path, 20), tmp)
  _truncate_all(tmp)
  os.remove(os.path.join(tmp, '_CHECKPOINT_METADATA'))

  state = _fit(tmp_path, 30)
  _assert_bitwise_equal(state, reference[0])
  assert not os.path.exists(tmp)
  assert sorted(os.listdir(_ckpt(tmp_path))) == ['20', '30']


def test_all_checkpoints_unreadable_stops_instead_of_starting_over(tmp_path):
  _fit(tmp_path, 20)
  for step in (10, 20):
    _truncate_all(_ckpt(tmp_path, step))
  with pytest.raises(training.CheckpointError) as e:
    _fit(tmp_path, 30)
  msg = str(e.value)
  assert _ckpt(tmp_path) in msg and '[10, 20]' in msg
  assert f'Delete {_ckpt(tmp_path)}' in msg


# ----------------------------------------------------------------------------
# A non-finite loss stops training and names the step and the checkpoint.


def test_nan_loss_stops_with_step_and_last_good_checkpoint(tmp_path):
  # state['step'] == 7 is the 8th update: logged as step 8.
  with pytest.raises(training.NonFiniteError) as e:
    _fit(tmp_path, 30, update=_toy_update(nan_at_step=7), checkpoint_every=5)
  msg = str(e.value)
  assert 'non-finite loss or gradient at step 8 ' in msg
  assert f'Last good checkpoint: step 5 in {_ckpt(tmp_path)}' in msg
  # Nothing after the NaN was saved, and what was saved is finite.
  manager = training.checkpoint_manager(_ckpt(tmp_path))
  assert manager.all_steps() == [5]
  manager.close()
  saved = _restore_raw(_ckpt(tmp_path), 5)
  assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(saved))


def test_nan_before_any_checkpoint_says_there_is_none(tmp_path):
  with pytest.raises(training.NonFiniteError) as e:
    _fit(tmp_path, 30, update=_toy_update(nan_at_step=1))
  msg = str(e.value)
  assert 'at step 2 ' in msg and 'Last good checkpoint: none' in msg


def test_skipped_update_keeps_parameters():
  state = _toy_state()
  grads = {'w': jnp.array([1., jnp.nan, 0.]), 'b': jnp.zeros(())}
  new, finite = training.apply_gradients(state, grads, jnp.float32(1.), _TX)
  assert float(finite) == 0.
  _assert_bitwise_equal(new['params'], state['params'])
  _assert_bitwise_equal(new['opt_state'], state['opt_state'])


# ----------------------------------------------------------------------------
# Atomic writes of figures, tables and metrics.


def _no_temp_files(directory):
  return not [f for f in os.listdir(directory) if f.startswith('.tmp-')]


def test_atomic_write_interrupted_mid_write_keeps_old_file(tmp_path):
  path = tmp_path / 'metrics.json'
  io.write_json(str(path), {'accuracy': 0.9})
  with pytest.raises(KeyboardInterrupt):
    with io.atomic_path(str(path)) as tmp:
      with open(tmp, 'w') as fh:
        fh.write('{"accuracy": 0.')  # half written
      raise KeyboardInterrupt
  assert json.loads(path.read_text()) == {'accuracy': 0.9}
  assert _no_temp_files(tmp_path)


def test_write_json_of_unserialisable_value_keeps_old_file(tmp_path):
  path = tmp_path / 'metrics.json'
  io.write_json(str(path), {'a': 1})
  with pytest.raises(TypeError):
    io.write_json(str(path), {'a': object()})
  assert json.loads(path.read_text()) == {'a': 1}
  assert _no_temp_files(tmp_path)


def test_save_figure_failing_mid_write_keeps_old_file(tmp_path):
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  path = tmp_path / 'fig.png'
  fig = plt.figure()
  io.save_figure(fig, str(path))
  old = path.read_bytes()
  fig = plt.figure()

  def broken_savefig(fname, **kwargs):
    with open(fname, 'wb') as fh:
      fh.write(b'\x89PNG partial')
    raise OSError('disk full')

  fig.savefig = broken_savefig
  with pytest.raises(OSError):
    io.save_figure(fig, str(path))
  assert path.read_bytes() == old
  assert _no_temp_files(tmp_path)


def test_atomic_write_replaces_whole_file_with_readable_permissions(tmp_path):
  path = tmp_path / 'table.txt'
  io.write_text(str(path), 'a much longer first version\n')
  io.write_text(str(path), 'short\n')
  assert path.read_text() == 'short\n'
  umask = os.umask(0)
  os.umask(umask)
  assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


def test_resuming_with_a_changed_config_warns(tmp_path, capsys):
  from lanjax import config as config_lib  # pylint: disable=g-import-not-at-top
  config = load_config('translated_mnist', 'quick')
  assert config_lib.save(config, str(tmp_path)) == []
  assert config_lib.save(config, str(tmp_path)) == []  # same config: silent
  assert 'WARNING' not in capsys.readouterr().out
  config.lan.beta = 7.0
  config.f.num_steps = 250
  assert config_lib.save(config, str(tmp_path)) == ['f.num_steps', 'lan.beta']
  out = capsys.readouterr().out
  assert 'another config (changed: f.num_steps, lan.beta)' in out
  assert json.loads((tmp_path / 'config.json').read_text())['lan']['beta'] == 7
