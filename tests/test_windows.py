"""Windowed training data (`training.Windows`): more examples than fit in memory.

`fit` reads window ``(s // steps_per_window) % num_windows`` at step ``s``,
loads a window only at a window boundary, never runs a compiled call across
one, holds one window at a time and compiles once. The kill-and-resume test
over window boundaries is in test_reliability.py.
"""

import weakref

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import load_config
from lanjax import config as config_lib
from lanjax import training
from lanjax.training import windows as windows_lib

N = 64
_TX = optax.adam(0.05)


class FakeSource:
  """A random-access source (like ``tfds.data_source``) that counts.

  Every example it hands out is a fresh array; ``max_live`` is the largest
  number of them alive at once, ``max_call`` the most handed out by one call.
  """

  def __init__(self, n=N):
    rng = np.random.default_rng(0)
    self.x = rng.normal(size=(n, 3)).astype(np.float32)
    self.y = (self.x @ np.array([1., -2., .5], np.float32) + 0.3)
    self.live = self.max_live = self.max_call = 0

  def __len__(self):
    return len(self.x)

  def _gone(self):
    self.live -= 1

  def __getitems__(self, idx):
    self.max_call = max(self.max_call, len(idx))
    out = []
    for i in idx:
      x = self.x[i].copy()
      weakref.finalize(x, self._gone)
      self.live += 1
      out.append({'x': x, 'y': self.y[i].copy(), 'id': np.int32(i)})
    self.max_live = max(self.max_live, self.live)
    return out


def _toy_update(state, data, key):
  """The toy regression of test_reliability: a batch of 8 drawn from data."""
  idx = jax.random.randint(key, (8,), 0, data['x'].shape[0])
  x, y = data['x'][idx], data['y'][idx]
  loss, grads = jax.value_and_grad(
      lambda p: jnp.mean((x @ p['w'] + p['b'] - y) ** 2))(state['params'])
  state, finite = training.apply_gradients(state, grads, loss, _TX)
  return state, {'loss': loss, 'finite': finite}


def _toy_state():
  return training.init_state({'w': jnp.zeros(3), 'b': jnp.zeros(())}, _TX)


def _fit(tmp_path, update, state, data, num_steps, **kw):
  kw = {'log_every': 5, 'checkpoint_every': 10, **kw}
  return training.fit(update, state, data, rng=jax.random.key(0),
                      num_steps=num_steps, workdir=str(tmp_path), name='toy',
                      tensorboard=False, **kw)


def _bitwise_equal(a, b):
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  return len(la) == len(lb) and all(
      np.asarray(u).tobytes() == np.asarray(v).tobytes()
      for u, v in zip(la, lb))


# ----------------------------------------------------------------------------
# The schedule, by hand.


def test_windows_cover_the_data_wrap_the_last_and_follow_the_step():
  w = training.Windows(read=None, num_examples=10, size=4, steps_per_window=3)
  assert w.num_windows == 3 and len(w) == 10
  np.testing.assert_array_equal(w.indices(0), [0, 1, 2, 3])
  np.testing.assert_array_equal(w.indices(2), [8, 9, 0, 1])  # wrapped
  assert [w.window(s) for s in range(11)] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 0]
  assert [w.next_boundary(s) for s in (0, 2, 3, 8)] == [3, 3, 6, 9]
  assert training.Windows(read=None, num_examples=8, size=4).for_batch(
      2).steps_per_window == 2


# ----------------------------------------------------------------------------
# fit with windows.


def _recording_update(state, data, key):
  """Writes the first example id of the window it reads at its step."""
  del key
  seen = state['params']['seen'].at[state['step']].set(data['id'][0])
  state = {**state, 'step': state['step'] + 1,
           'params': {**state['params'], 'seen': seen}}
  return state, {'loss': jnp.zeros(()), 'finite': jnp.array(True)}


@pytest.mark.parametrize('steps_per_dispatch', [1, 3])
def test_fit_reads_the_window_of_each_step_and_no_call_crosses_one(
    tmp_path, steps_per_dispatch):
  source = FakeSource()
  win = windows_lib.from_source(source, 24, ('x', 'y', 'id'), chunk=8)
  win = win.for_batch(12)  # 2 steps per window; 3 windows, the last wrapped
  state = {'step': jnp.zeros((), jnp.int32),
           'params': {'seen': jnp.full(20, -1, jnp.int32)}, 'opt_state': ()}
  out = _fit(tmp_path, _recording_update, state, win, 20,
             steps_per_dispatch=steps_per_dispatch)
  # Step s reads window (s // 2) % 3, whose first example is 24 * window.
  want = [24 * ((s // 2) % 3) for s in range(20)]
  assert np.asarray(out['params']['seen']).tolist() == want


def test_one_window_of_all_examples_is_bitwise_the_in_memory_run(tmp_path):
  source = FakeSource()
  in_memory = {'x': jnp.asarray(source.x), 'y': jnp.asarray(source.y)}
  want = _fit(tmp_path / 'mem', _toy_update, _toy_state(), in_memory, 30)
  win = windows_lib.from_source(source, N, ('x', 'y')).for_batch(8)
  got = _fit(tmp_path / 'win', _toy_update, _toy_state(), win, 30)
  assert _bitwise_equal(got, want)
  # Smaller windows read other data: the runs differ.
  small = windows_lib.from_source(source, 16, ('x', 'y')).for_batch(8)
  other = _fit(tmp_path / 'small', _toy_update, _toy_state(), small, 30)
  assert not _bitwise_equal(other, want)


def test_at_most_one_window_is_held_and_each_is_read_once_per_visit(tmp_path):
  source = FakeSource()
  win = windows_lib.from_source(source, 16, ('x', 'y'), chunk=8)
  reads = []
  held = {'host': 0, 'device': 0, 'max_host': 0, 'max_device': 0}

  def hold(where, array):  # counts the frames of `array` until it is freed
    n = len(array)
    held[where] += n
    held[f'max_{where}'] = max(held[f'max_{where}'], held[where])
    weakref.finalize(array, lambda: held.__setitem__(where, held[where] - n))

  def read(idx):  # the windows read on the host
    out = win.read(idx)
    reads.append(int(idx[0]))
    hold('host', out['x'])
    return out

  def build(window):  # the same windows on the device
    hold('device', window['x'])
    return window

  counted = training.Windows(read=read, num_examples=N, size=16,
                             build=build).for_batch(8)
  _fit(tmp_path, _toy_update, _toy_state(), counted, 30, log_every=3,
       checkpoint_every=30)
  # 2 steps per window: steps 0-1 read window 0, ..., 28-29 window 14 % 4.
  assert reads == [16 * (k % 4) for k in range(15)]
  assert held['max_host'] == 16 and held['max_device'] == 16, held
  assert 0 < source.max_live <= 16 and source.max_call <= 8


def test_windows_compile_the_step_once(tmp_path):
  traces = []

  def update(state, data, key):
    traces.append(1)
    return _toy_update(state, data, key)

  source = FakeSource()
  _fit(tmp_path / 'mem', update, _toy_state(),
       {'x': jnp.asarray(source.x), 'y': jnp.asarray(source.y)}, 12)
  in_memory = len(traces)
  traces.clear()
  # 3 windows of 24 (the last wrapped around), 3 steps each: 4 windows read.
  win = windows_lib.from_source(source, 24, ('x', 'y')).for_batch(8)
  _fit(tmp_path / 'win', update, _toy_state(), win, 12)
  assert len(traces) == in_memory


# ----------------------------------------------------------------------------
# Errors, before the first step.


def test_window_errors_name_the_field_and_the_fix():
  field = 'config.data.window_frames'
  with pytest.raises(ValueError, match=f'{field}=65 must be between 1 and'
                     r'.* 64.*at most 64'):
    windows_lib.from_source(FakeSource(), 65, ('x',), field=field)
  w = windows_lib.from_source(FakeSource(), 20, ('x',), field=field)
  with pytest.raises(ValueError, match=f'{field}=20 must be a multiple of '
                     r'config.f.batch_size=8.*e\.g\. 16'):
    w.for_batch(8, what='config.f.batch_size')
  with pytest.raises(ValueError, match=f'random access.*{field}=0'):
    windows_lib.from_source(iter(range(64)), 16, ('x',), field=field)


def test_fit_refuses_windows_without_steps_per_window(tmp_path):
  w = windows_lib.from_source(FakeSource(), 16, ('x', 'y'))
  with pytest.raises(ValueError, match='for_batch'):
    _fit(tmp_path, _toy_update, _toy_state(), w, 10)
  assert not (tmp_path / 'checkpoints').exists()


def test_config_checks_the_window_against_data_and_batches():
  config = load_config('pong', 'quick')  # 256 frames, batches of 8
  config.data.window_frames = 64
  config_lib.validate(config)
  for bad, match in ((512, 'larger than the training data'),
                     (60, 'multiple of config.f.batch_size=8'),
                     (-1, 'int >= 0')):
    config.data.window_frames = bad
    with pytest.raises(config_lib.ConfigError, match=match):
      config_lib.validate(config)
  config.data.window_frames = 64
  config.lan.batch_size = 48
  with pytest.raises(config_lib.ConfigError,
                     match='multiple of config.lan.batch_size=48'):
    config_lib.validate(config)


def test_paper_variant_reads_windows_every_batch_divides():
  config = load_config('pong', 'paper')
  d = config.data
  assert 0 < d.window_frames < d.num_train
  assert d.window_frames * 64 * 64 * 3 <= 3e9  # at most 3 GB of uint8 frames
  config_lib.validate(config)
  assert load_config('pong').data.window_frames == 0  # default: in memory


_MESH_SCRIPT = '''
import tempfile
import jax, jax.numpy as jnp, numpy as np, optax
from lanjax import training
assert jax.device_count() == 8, jax.devices()
tx = optax.adam(0.05)
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 3)).astype(np.float32)
y = x @ np.array([1., -2., .5], np.float32)
devices = []

def build(window):
  devices.append(len(window['x'].sharding.device_set))
  return window

def update(state, data, key):
  idx = jax.random.randint(key, (8,), 0, data['x'].shape[0])
  loss, grads = jax.value_and_grad(lambda p: jnp.mean(
      (data['x'][idx] @ p - data['y'][idx]) ** 2))(state['params'])
  state, finite = training.apply_gradients(state, grads, loss, tx)
  return state, {'loss': loss, 'finite': finite}

out = {}
for n in (8, 1):
  win = training.Windows(read=lambda i: {'x': x[i], 'y': y[i]},
                         num_examples=64, size=16, build=build).for_batch(8)
  state = training.fit(update, training.init_state(jnp.zeros(3), tx), win,
                       rng=jax.random.key(0), num_steps=12,
                       workdir=tempfile.mkdtemp(), name='toy', log_every=6,
                       checkpoint_every=12, tensorboard=False,
                       mesh=training.make_mesh(n))
  out[n] = np.asarray(state['params'])
print('DEVICES', devices)
np.testing.assert_allclose(out[8], out[1], rtol=1e-5, atol=1e-6)
print('OK')
'''


def test_windows_are_replicated_over_the_mesh():
  """On 8 simulated CPU devices every window is placed on all 8, and the run
  gives the one-device parameters."""
  import subprocess
  import sys
  from conftest import ROOT, subprocess_env
  out = subprocess.run(
      [sys.executable, '-c', _MESH_SCRIPT], cwd=str(ROOT), text=True,
      capture_output=True, timeout=300, env=subprocess_env(
          XLA_FLAGS='--xla_force_host_platform_device_count=8',
          JAX_PLATFORMS='cpu'))
  assert out.returncode == 0, out.stderr[-3000:]
  # 6 windows (2 steps each) read on 8 devices, then 6 on 1.
  assert 'DEVICES [8, 8, 8, 8, 8, 8, 1, 1, 1, 1, 1, 1]' in out.stdout
  assert 'OK' in out.stdout
