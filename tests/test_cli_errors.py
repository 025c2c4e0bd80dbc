"""The CLIs fail with one message and a non-zero exit, never a traceback.

Each case runs train.py / evaluate.py as a user would (a subprocess) and
checks the exit status, that the message says what, where and what to do, and
that no traceback is printed unless --verbose is given. The work-dir lock is
checked with two real processes.
"""

import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import optax
import pytest
from absl import logging as absl_logging

from conftest import ROOT, SHARED_TFDS, subprocess_env
from lanjax import cli
from lanjax import training
from lanjax import workdir as workdir_lib

pytestmark = pytest.mark.filterwarnings(
    'ignore:the load_module:DeprecationWarning')

QUICK = ['--config', str(ROOT / 'configs' / 'translated_mnist.py') + ':quick']


def _mnist_dir():
  """A TFDS data dir with MNIST prepared, or None."""
  for d in (os.environ.get('TFDS_DATA_DIR'), str(SHARED_TFDS)):
    if d and os.path.isdir(os.path.join(d, 'mnist')):
      return d
  return None


def _env():
  extra = {}
  if _mnist_dir():
    extra['TFDS_DATA_DIR'] = _mnist_dir()
  return subprocess_env(**extra)


def _cli(script, *args, timeout=120):
  return subprocess.run(
      [sys.executable, str(ROOT / script), *QUICK, *args], cwd=ROOT,
      env=_env(), capture_output=True, text=True, timeout=timeout)


def _one_message(proc):
  """The ERROR message of a failed command, checked to be one, untraced."""
  assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
  assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
  errors = [l for l in proc.stderr.splitlines() if l.startswith('ERROR: ')]
  assert len(errors) == 1, proc.stderr[-2000:]
  return proc.stderr[proc.stderr.index('ERROR: '):]


# ----------------------------------------------------------------------------
# Work dir.


def test_workdir_that_is_a_file(tmp_path):
  path = tmp_path / 'a_file'
  path.write_text('x')
  msg = _one_message(_cli('train.py', f'--workdir={path}'))
  assert f'--workdir {path} is a file, not a directory' in msg
  assert 'Pass a directory' in msg
  assert path.read_text() == 'x'  # untouched


def test_workdir_that_cannot_be_created():
  # /proc refuses new directories, for root too.
  msg = _one_message(_cli('train.py', '--workdir=/proc/lanjax_test/run'))
  assert '--workdir /proc/lanjax_test/run is not writable' in msg
  assert 'Choose a directory you can write to' in msg


@pytest.mark.skipif(os.geteuid() == 0, reason='root writes anywhere')
def test_workdir_without_write_permission(tmp_path):
  ro = tmp_path / 'ro'
  ro.mkdir()
  ro.chmod(0o555)
  try:
    msg = _one_message(_cli('train.py', f'--workdir={ro}'))
  finally:
    ro.chmod(0o755)
  assert f'--workdir {ro} is not writable' in msg and 'Permission' in msg


def test_check_workdir_unwritable_in_process(tmp_path, monkeypatch):
  def refuse(*args, **kwargs):
    raise PermissionError(errno.EACCES, 'Permission denied', str(tmp_path))
  monkeypatch.setattr(workdir_lib.tempfile, 'mkstemp', refuse)
  with pytest.raises(workdir_lib.WorkdirError,
                     match=r'is not writable \(Permission denied: '):
    workdir_lib.check_workdir(tmp_path / 'run')


def test_evaluate_on_missing_workdir(tmp_path):
  msg = _one_message(_cli('evaluate.py', f'--workdir={tmp_path}/none'))
  assert f'--workdir {tmp_path}/none does not exist' in msg
  assert 'Train it first' in msg
  assert not (tmp_path / 'none').exists()  # evaluation creates nothing


@pytest.mark.slow  # loads MNIST and builds the translated test set (~25 s)
def test_evaluate_without_checkpoints(tmp_path):
  if not _mnist_dir():
    pytest.skip('MNIST is not prepared (../shared or $TFDS_DATA_DIR)')
  msg = _one_message(_cli('evaluate.py', f'--workdir={tmp_path}'))
  assert 'No checkpoint of F at ' + str(tmp_path) in msg
  assert 'Train it first' in msg


_NO_DATA = ('--config.data.data_dir={0}/no_data',
            '--config.data.manual_dir={0}/no_raw', '--config.data.download=False')


def test_missing_data_is_one_message_and_verbose_gives_the_traceback(tmp_path):
  no_data = [a.format(tmp_path) for a in _NO_DATA]
  msg = _one_message(_cli('evaluate.py', f'--workdir={tmp_path}', *no_data))
  assert "The TFDS dataset 'mnist' is not prepared" in msg
  assert 'export TFDS_DATA_DIR=' in msg  # what to do
  verbose = _cli('evaluate.py', f'--workdir={tmp_path}', *no_data,
                 '--verbose')
  assert verbose.returncode == 1
  assert 'Traceback (most recent call last)' in verbose.stderr
  assert 'DatasetNotFoundError: The TFDS dataset' in verbose.stderr


# ----------------------------------------------------------------------------
# The lock, with two real processes.

_HOLD = '''
import sys, time
from lanjax import workdir
with workdir.lock(sys.argv[1]):
  print('locked', flush=True)
  time.sleep(120)
'''


def _holder(workdir):
  proc = subprocess.Popen([sys.executable, '-c', _HOLD, str(workdir)],
                          env=subprocess_env(), stdout=subprocess.PIPE,
                          text=True)
  assert proc.stdout.readline().strip() == 'locked'
  return proc


def test_second_run_on_a_locked_workdir_is_refused_naming_the_first(tmp_path):
  holder = _holder(tmp_path)
  try:
    owner = json.loads((tmp_path / '.lock').read_text())
    assert owner['pid'] == holder.pid
    assert owner['host'] == socket.gethostname()
    msg = _one_message(_cli('train.py', f'--workdir={tmp_path}'))
    assert f'--workdir {tmp_path} is in use by another training run' in msg
    assert f'pid {holder.pid} on host {socket.gethostname()}' in msg
    assert 'use another --workdir' in msg and 'delete' in msg
    assert not (tmp_path / 'config.json').exists()  # refused before writing
    # A reader is not refused: evaluate.py gets past the lock (to the data,
    # which is made missing here so that it stops at once).
    proc = _cli('evaluate.py', f'--workdir={tmp_path}',
                *[a.format(tmp_path) for a in _NO_DATA])
    msg = _one_message(proc)
    assert 'in use' not in msg
    assert "The TFDS dataset 'mnist' is not prepared" in msg
  finally:
    holder.kill()
    holder.wait()
  # Killed with SIGKILL: the lock is left behind, and is detected as stale.
  assert (tmp_path / '.lock').exists()
  assert workdir_lib.is_stale(workdir_lib.read_lock(str(tmp_path)))
  with workdir_lib.lock(str(tmp_path)) as mine:
    assert workdir_lib.read_lock(str(tmp_path)) == mine
    assert mine['pid'] == os.getpid()
  assert not (tmp_path / '.lock').exists()  # released on exit


def test_lock_of_a_live_process_is_not_stale_and_is_kept(tmp_path):
  holder = _holder(tmp_path)
  try:
    with pytest.raises(workdir_lib.WorkdirLockedError,
                       match=f'pid {holder.pid}'):
      with workdir_lib.lock(str(tmp_path)):
        pass
    assert json.loads((tmp_path / '.lock').read_text())['pid'] == holder.pid
  finally:
    holder.kill()
    holder.wait()


def test_lock_of_another_host_is_never_taken_over(tmp_path):
  (tmp_path / '.lock').write_text(json.dumps(
      {'pid': 1, 'host': 'another-host', 'time': time.time(),
       'command': 'train.py'}))
  with pytest.raises(workdir_lib.WorkdirLockedError,
                     match='pid 1 on host another-host'):
    with workdir_lib.lock(str(tmp_path)):
      pass


def test_lock_released_when_the_block_raises(tmp_path):
  with pytest.raises(ZeroDivisionError):
    with workdir_lib.lock(str(tmp_path)):
      assert (tmp_path / '.lock').exists()
      1 / 0  # pylint: disable=pointless-statement
  assert not (tmp_path / '.lock').exists()


def test_train_releases_its_lock_on_sigterm(tmp_path):
  proc = subprocess.Popen(
      [sys.executable, str(ROOT / 'train.py'), *QUICK,
       f'--workdir={tmp_path}'], cwd=ROOT, env=_env(),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.time() + 60
    while not (tmp_path / '.lock').exists() and time.time() < deadline:
      time.sleep(0.05)
    assert (tmp_path / '.lock').exists()
    assert json.loads((tmp_path / '.lock').read_text())['pid'] == proc.pid
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == cli.EXIT_TERMINATED, err[-2000:]
  assert 'ERROR: Terminated. Run the same command again' in err
  assert 'Traceback' not in err
  assert not (tmp_path / '.lock').exists()


# ----------------------------------------------------------------------------
# Full disk during a checkpoint.


def _toy_fit(workdir, **kw):
  opt = optax.sgd(0.1)
  params = {'w': jnp.ones(3)}
  state = training.init_state(params, opt)

  def update(state, data, key):
    del key
    grads = jax.grad(lambda p: jnp.sum((p['w'] - data) ** 2))(state['params'])
    loss = jnp.sum(grads['w'])
    state, finite = training.apply_gradients(state, grads, loss, opt)
    return state, {'loss': loss, 'finite': finite}

  return training.fit(update, state, jnp.zeros(3), rng=jax.random.key(0),
                      num_steps=6, workdir=str(workdir), name='toy',
                      log_every=2, checkpoint_every=2, tensorboard=False,
                      **kw)


def test_full_disk_during_a_checkpoint(tmp_path, monkeypatch):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  real_save = ocp.CheckpointManager.save

  def save(self, step, *args, **kwargs):
    if step == 4:  # the second checkpoint: disk full, as TensorStore says it
      os.makedirs(os.path.join(self.directory, '4.orbax-checkpoint-tmp'))
      raise ValueError(
          'RESOURCE_EXHAUSTED: Error writing "params.w/0": Failed to write '
          "12 bytes to file 5: No space left on device [os_error_code='28']")
    return real_save(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, 'save', save)
  with pytest.raises(training.CheckpointSaveError) as e:
    _toy_fit(tmp_path)
  directory = tmp_path / 'checkpoints' / 'toy'
  msg = str(e.value)
  assert e.value.errno == errno.ENOSPC
  assert f'Could not write checkpoint 4 of [toy] in {directory}' in msg
  assert 'no space left on the device' in msg and 'MiB free' in msg
  assert 'it resumes from checkpoint 2' in msg
  assert sorted(os.listdir(directory)) == ['2']  # incomplete save removed
  assert cli.error_message(e.value) == msg
  # Space is back: the same call resumes from checkpoint 2 and finishes.
  monkeypatch.setattr(ocp.CheckpointManager, 'save', real_save)
  assert int(_toy_fit(tmp_path)['step']) == 6


def test_other_save_errors_propagate_unchanged(tmp_path, monkeypatch):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  def save(self, step, *args, **kwargs):
    raise ValueError('some other orbax problem')

  monkeypatch.setattr(ocp.CheckpointManager, 'save', save)
  with pytest.raises(ValueError, match='some other orbax problem'):
    _toy_fit(tmp_path)


def test_error_message_of_os_errors_and_of_bugs():
  full = OSError(errno.ENOSPC, 'No space left on device', '/x/y')
  msg = cli.error_message(full)
  assert msg.startswith('No space left on the device (No space left on '
                        'device: /x/y)') and 'run the same command again' in msg
  denied = PermissionError(errno.EACCES, 'Permission denied', '/x/z')
  assert cli.error_message(denied).startswith(
      'Cannot write (Permission denied: /x/z)')
  bug = KeyError('w')
  assert cli.error_message(bug).startswith("KeyError: 'w'\n")
  assert '--verbose' in cli.error_message(bug)


# ----------------------------------------------------------------------------
# Quiet logs.


def test_expected_warnings_are_filtered_and_others_kept():
  records = []

  class Capture(logging.Handler):

    def emit(self, record):
      records.append(record.getMessage())

  logger = logging.getLogger('absl')
  handler = Capture(level=logging.DEBUG)
  logger.addHandler(handler)
  f = cli.quiet_expected_warnings()
  try:
    absl_logging.warning('Given directory is read only=/tmp/x/checkpoints/f')
    absl_logging.warning('Metadata file does not exist: /tmp/x/f/100/default/'
                         '_CHECKPOINT_METADATA')
    absl_logging.warning('CheckpointManagerOptions.read_only=True, setting '
                         'create=False.')
    absl_logging.warning('OpenCV is not installed. We recommend ...')
    absl_logging.warning('something unexpected happened')
    absl_logging.error('Metadata file does not exist: an ERROR is kept')
    absl_logging.error('[process=0] _SignalingThread.run() raised an '
                       'exception: RESOURCE_EXHAUSTED')
  finally:
    logger.removeHandler(handler)
    logger.removeFilter(f)
  assert records == ['something unexpected happened',
                     'Metadata file does not exist: an ERROR is kept']
