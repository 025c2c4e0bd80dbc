"""lanjax trains and evaluates without TensorFlow; TensorBoard logs stay honest.

TensorFlow is made unimportable in a subprocess as on a machine where it is
not installed: every import finder is wrapped to find no ``tensorflow``
module (`importlib.util.find_spec` returns None, ``import tensorflow`` raises
ModuleNotFoundError). A ``sys.modules['tensorflow'] = None`` block would not
do: etils and TFDS take ``'tensorflow' in sys.modules`` to mean TensorFlow is
loaded, and fail where an uninstalled TensorFlow works.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, SHARED_TFDS, subprocess_env
from lanjax.training import logs

pytestmark = pytest.mark.filterwarnings(
    'ignore:the load_module:DeprecationWarning')

# Prepended to the code run in the subprocess.
HIDE_TENSORFLOW = '''
import sys

class _HideTensorFlow:
  def __init__(self, finder):
    self.finder = finder
  def find_spec(self, name, path=None, target=None):
    if name == 'tensorflow' or name.startswith('tensorflow.'):
      return None
    find = getattr(self.finder, 'find_spec', None)
    return find(name, path, target) if find else None
  def __getattr__(self, attr):
    return getattr(self.finder, attr)

sys.meta_path[:] = [_HideTensorFlow(f) for f in sys.meta_path]
import atexit
atexit.register(lambda: print('TENSORFLOW IMPORTED' if any(
    m == 'tensorflow' or m.startswith('tensorflow.') for m in sys.modules)
    else 'NO TENSORFLOW', flush=True))
'''


def _run_without_tensorflow(code, *, timeout=300, **env):
  return subprocess.run(
      [sys.executable, '-c', HIDE_TENSORFLOW + code], cwd=ROOT,
      env=subprocess_env(**env), capture_output=True, text=True,
      timeout=timeout)


def test_tensorflow_is_really_hidden():
  proc = _run_without_tensorflow(
      'import importlib.util\n'
      'assert importlib.util.find_spec("tensorflow") is None\n'
      'try:\n  import tensorflow\nexcept ModuleNotFoundError:\n'
      '  print("blocked")\n')
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.splitlines() == ['blocked', 'NO TENSORFLOW']


def test_library_and_logs_without_tensorflow(tmp_path):
  code = f'''
import lanjax, lanjax.training, lanjax.experiments, lanjax.cli
from lanjax.training import logs
logger = logs.MetricLogger({str(tmp_path)!r}, 'f', total_steps=4)
logger.start(0)
logger.write(2, {{'loss': 0.5}})
logger.write_eval(2, {{'accuracy': 0.25}})
logger.close()
print(logs.read_scalars({str(tmp_path / 'tensorboard' / 'f')!r}))
from tensorboard.backend.event_processing import event_accumulator
acc = event_accumulator.EventAccumulator({str(tmp_path / 'tensorboard' / 'f')!r})
acc.Reload()
print(sorted(acc.Tags()['scalars']), [(e.step, e.value) for e in acc.Scalars('loss')])
'''
  proc = _run_without_tensorflow(code)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.strip().splitlines()
  assert lines[-1] == 'NO TENSORFLOW'
  assert "'loss': [(2, 0.5)]" in lines[-3] and "'test_accuracy': [(2, 0.25)]" in lines[-3]
  # TensorBoard's own reader sees the scalars.
  assert lines[-2] == "['loss', 'steps_per_sec', 'test_accuracy'] [(2, 0.5)]"


def _mnist_dir():
  for d in (os.environ.get('TFDS_DATA_DIR'), str(SHARED_TFDS)):
    if d and os.path.isdir(os.path.join(d, 'mnist')):
      return d
  return None


@pytest.mark.slow  # the quick config end to end, no attribution table
def test_quick_run_without_tensorflow(tmp_path):
  if not _mnist_dir():
    pytest.skip('MNIST is not prepared (../shared or $TFDS_DATA_DIR)')
  workdir = tmp_path / 'run'
  code = f'''
import runpy
sys.argv = ['train.py', '--config', {str(ROOT / 'configs' / 'translated_mnist.py')!r} + ':quick',
            '--workdir', {str(workdir)!r}, '--config.eval.compare_examples=0']
try:
  runpy.run_path({str(ROOT / 'train.py')!r}, run_name='__main__')
except SystemExit as e:
  assert not e.code, e.code
'''
  proc = _run_without_tensorflow(code, timeout=600, TFDS_DATA_DIR=_mnist_dir())
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.strip().splitlines()[-1] == 'NO TENSORFLOW'
  assert "claims: {" in proc.stdout
  # Quiet: none of the expected orbax / TFDS warnings, no traceback.
  for noise in ('read only', 'Metadata file does not exist', 'OpenCV',
                'Traceback'):
    assert noise not in proc.stderr, proc.stderr[-2000:]
  scalars = logs.read_scalars(str(workdir / 'standard' / 'tensorboard' / 'f'))
  steps = [s for s, _ in scalars['loss']]
  assert steps == sorted(set(steps)) and steps[-1] == 100
  assert os.path.exists(workdir / 'standard' / 'metrics.json') or any(
      name.startswith('metrics') for name in os.listdir(workdir))
  assert not (workdir / '.lock').exists()


# ----------------------------------------------------------------------------
# TensorBoard event files after a resume.


def _log(workdir, start, steps, value):
  logger = logs.MetricLogger(str(workdir), 'f', total_steps=100)
  logger.start(start)
  for s in steps:
    logger.write(s, {'loss': value + s})
  logger.close()


def test_resume_trims_event_files_like_the_json_lines(tmp_path):
  _log(tmp_path, 0, [10, 20, 30, 40], 0.)
  # The run was killed after step 40 with its last checkpoint at 20: the
  # resumed run starts at 20 and logs 30, 40, 50 again.
  _log(tmp_path, 20, [30, 40, 50], 1000.)
  tb = str(tmp_path / 'tensorboard' / 'f')
  loss = logs.read_scalars(tb)['loss']
  assert loss == [(10, 10.), (20, 20.), (30, 1030.), (40, 1040.), (50, 1050.)]
  jsonl = [json.loads(l) for l in open(tmp_path / 'metrics_f.jsonl')]
  assert [(r['step'], r['loss']) for r in jsonl] == loss


def test_resume_at_zero_removes_earlier_event_files(tmp_path):
  _log(tmp_path, 0, [10, 20], 0.)
  _log(tmp_path, 0, [10], 5.)
  tb = tmp_path / 'tensorboard' / 'f'
  assert logs.read_scalars(str(tb))['loss'] == [(10, 15.)]
  assert len(os.listdir(tb)) == 1


def test_event_file_cut_by_a_kill_is_read_up_to_the_cut(tmp_path):
  _log(tmp_path, 0, [10, 20, 30], 0.)
  tb = tmp_path / 'tensorboard' / 'f'
  (path,) = tb.iterdir()
  data = path.read_bytes()
  path.write_bytes(data[:-7])  # the last record half written
  assert logs.read_scalars(str(tb))['loss'] == [(10, 10.), (20, 20.)]
  _log(tmp_path, 30, [40], 0.)  # rewritten whole, the cut record dropped
  assert logs.read_scalars(str(tb))['loss'] == [(10, 10.), (20, 20.), (40, 40.)]
  assert all(len(list(logs.read_events(str(p)))) for p in tb.iterdir())


def test_event_file_writer_is_a_clu_metric_writer(tmp_path):
  import numpy as np  # pylint: disable=g-import-not-at-top
  writer = logs.EventFileWriter(str(tmp_path))
  base = sys.modules['clu.metric_writers.interface'].MetricWriter
  assert isinstance(writer, base)
  writer.write_scalars(3, {'a': np.float32(1.5)})
  writer.write_texts(3, {'note': 'hello'})
  writer.write_histograms(3, {'h': np.arange(10.)})
  writer.write_images(3, {'img': np.zeros((2, 4, 4, 1))})
  writer.close()
  events = list(logs.read_events(writer.path))
  assert events[0].file_version == 'brain.Event:2'
  tags = [(e.step, v.tag) for e in events[1:] for v in e.summary.value]
  assert tags == [(3, 'a'), (3, 'note'), (3, 'h'), (3, 'img/0'), (3, 'img/1')]
  with pytest.raises(NotImplementedError):
    writer.write_videos(3, {})
