"""Atari Pong: frames, area resize, object maps, crafted frames, autoencoder."""

import importlib.util
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import ROOT, load_config, subprocess_env
from lanjax.data import pong
from lanjax.experiments import figures
from lanjax.models import ConvAutoencoder, LatentAttentionNetwork

HAS_ALE = (importlib.util.find_spec('ale_py') is not None
           and importlib.util.find_spec('gymnasium') is not None)
needs_ale = pytest.mark.skipif(not HAS_ALE,
                               reason='gymnasium and ale-py not installed')


def _screen(ball=None, player=None, opponent=None):
  """A synthetic 210x160 screen: field, walls and objects at given corners."""
  s = np.empty(pong.SCREEN + (3,), np.uint8)
  s[...] = pong.BACKGROUND
  s[pong.TOP_WALL_ROWS[0]:pong.TOP_WALL_ROWS[1]] = pong.WHITE
  s[pong.BOTTOM_WALL_ROWS[0]:pong.BOTTOM_WALL_ROWS[1]] = pong.WHITE
  for corner, shape, colour in ((player, pong.PADDLE_SHAPE, pong.PLAYER),
                                (opponent, pong.PADDLE_SHAPE, pong.OPPONENT),
                                (ball, pong.BALL_SHAPE, pong.WHITE)):
    if corner is not None:
      r, c = corner
      s[r:r + shape[0], c:c + shape[1]] = colour
  return s


def _indicator(corner, shape):
  m = np.zeros(pong.SCREEN + (1,))
  m[corner[0]:corner[0] + shape[0], corner[1]:corner[1] + shape[1]] = 1
  return pong.area_resize(m)[..., 0]


# ----------------------------------------------------------------------------
# Area resize.


def test_area_matrix_hand_computed_and_rows_sum_to_one():
  np.testing.assert_allclose(pong.area_matrix(5, 2), [
      [0.4, 0.4, 0.2, 0, 0], [0, 0, 0.2, 0.4, 0.4]])
  m = pong.area_matrix(210, 64)
  np.testing.assert_allclose(m.sum(1), 1.0)
  # Every input pixel is shared out whole: columns sum to 64 / 210.
  np.testing.assert_allclose(m.sum(0), 64 / 210)


@pytest.mark.parametrize('shape,size', [((210, 160), (64, 64)),
                                        ((7, 10), (3, 4)), ((3, 5), (7, 6))])
def test_area_resize_is_the_area_matrix_product(shape, size):
  rng = np.random.default_rng(0)
  for x in (rng.integers(0, 256, (2,) + shape + (3,)).astype(np.uint8),
            rng.random((2,) + shape + (3,))):
    want = np.einsum('ih,nhwc,jw->nijc', pong.area_matrix(shape[0], size[0]),
                     x.astype(np.float64), pong.area_matrix(shape[1], size[1]))
    got = pong.area_resize(x, size)
    assert got.shape == (2,) + tuple(size) + (3,)
    np.testing.assert_allclose(got, want, atol=1e-9)
    np.testing.assert_allclose(pong.area_resize(x[0], size), want[0],
                               atol=1e-9)


def test_area_resize_integer_factor_is_block_mean():
  x = np.arange(2 * 4 * 6 * 1, dtype=np.float64).reshape(2, 4, 6, 1)
  want = x.reshape(2, 2, 2, 3, 2, 1).mean((2, 4))
  np.testing.assert_allclose(pong.area_resize(x, (2, 3)), want)


def test_resize_frames_rounds_and_keeps_batch_shape():
  x = np.random.default_rng(1).integers(0, 256, (3, 2) + pong.SCREEN + (3,),
                                        dtype=np.uint8)
  out = pong.resize_frames(x)
  assert out.shape == (3, 2, 64, 64, 3) and out.dtype == np.uint8
  np.testing.assert_array_equal(out, np.rint(pong.area_resize(x)))


def test_to_float_range():
  x = np.array([[0, 255]], np.uint8)
  np.testing.assert_allclose(pong.to_float(x), [[0.0, 1.0]])
  assert pong.to_float(jnp.asarray(x)).dtype == jnp.float32


# ----------------------------------------------------------------------------
# Object maps and regions (synthetic screens: no emulator needed).


def test_object_maps_read_back_each_objects_share():
  ball, player, opponent = (100, 75), (60, pong.PLAYER_COLS[0]), (
      150, pong.OPPONENT_COLS[0])
  frame = pong.resize_frames(_screen(ball, player, opponent))
  maps = np.asarray(pong.object_maps(frame))
  for ch, (corner, shape) in enumerate(((ball, pong.BALL_SHAPE),
                                        (player, pong.PADDLE_SHAPE),
                                        (opponent, pong.PADDLE_SHAPE))):
    np.testing.assert_allclose(maps[..., ch], _indicator(corner, shape),
                               atol=0.03)
  # Same from float frames in [0, 1].
  np.testing.assert_allclose(pong.object_maps(pong.to_float(frame)), maps,
                             atol=1e-5)
  # An empty field has no objects (walls are background, not ball).
  empty = pong.object_maps(pong.resize_frames(_screen()))
  assert float(jnp.abs(empty).max()) < 0.03


def test_object_maps_rejects_wrong_shape():
  with pytest.raises(ValueError, match='64, 64, 3'):
    pong.object_maps(np.zeros((2, 32, 32, 3)))


def test_ball_region_threshold():
  frame = pong.resize_frames(_screen(ball=(100, 75)))
  region = np.asarray(pong.ball_region(frame, threshold=0.1))
  truth = _indicator((100, 75), pong.BALL_SHAPE)
  np.testing.assert_array_equal(region, truth >= 0.1)
  assert 1 <= region.sum() <= 4


def test_column_regions_are_the_paddles_columns_in_the_field():
  player = pong.column_region(pong.PLAYER_COLS)
  opponent = pong.column_region(pong.OPPONENT_COLS)
  # Screen columns 140-143 fall in output columns 56 (140-142.5) and 57.
  assert set(np.flatnonzero(player.any(0))) == {56, 57}
  assert set(np.flatnonzero(opponent.any(0))) == {6, 7}
  rows = np.flatnonzero(player.any(1))
  # Field rows 34-193: output rows 10 (32.8-36.1) to 59 (193.6-196.9).
  assert rows[0] == 10 and rows[-1] == 59 and len(rows) == 50
  assert not (player & opponent).any()
  field = pong.field_region()
  assert (field | ~player).all()


def test_paddle_rows_finds_the_paddle():
  assert pong.paddle_rows(_screen(player=(80, pong.PLAYER_COLS[0]))) == (
      80, 96)
  assert pong.paddle_rows(_screen()) is None
  assert pong.paddle_rows(_screen(opponent=(50, 16)),
                          pong.OPPONENT) == (50, 66)


# ----------------------------------------------------------------------------
# Evaluation functions.


def test_reconstruction_errors_on_the_ball():
  with_ball = pong.to_float(pong.resize_frames(
      np.stack([_screen(ball=(100, 75), player=(60, 140)),
                _screen(player=(60, 140))])))
  without = pong.to_float(pong.resize_frames(
      np.stack([_screen(player=(60, 140))] * 2)))
  same = pong.reconstruction_errors(with_ball, with_ball)
  np.testing.assert_allclose(same['mse'], 0.0, atol=1e-12)
  assert float(same['ball_kept'][0]) == pytest.approx(1.0, abs=1e-5)
  assert np.isnan(same['ball_kept'][1]) and np.isnan(same['mse_ball'][1])
  # A reconstruction that drops the ball: error only on the ball's pixels.
  lost = pong.reconstruction_errors(with_ball, without)
  assert float(lost['ball_kept'][0]) == pytest.approx(0.0, abs=0.05)
  assert float(lost['mse_ball'][0]) > 0.01
  assert float(lost['mse_rest'][0]) < 1e-3 * float(lost['mse_ball'][0])
  assert float(lost['mse'][0]) > 0
  np.testing.assert_allclose(lost['mse'][1], 0.0, atol=1e-12)
  with pytest.raises(ValueError, match='same shape'):
    pong.reconstruction_errors(with_ball, with_ball[:1])


def test_craft_duplicates_draws_the_paddle_and_its_footprint():
  screen = _screen(player=(60, 140), opponent=(100, 16))
  corners = np.array([[150, 140], [80, 80], [34, 100]])
  out = pong.craft_duplicates(screen, corners)
  assert out['image'].shape == (3, 64, 64, 3)
  assert out['image'].dtype == np.uint8
  for i, corner in enumerate(corners):
    np.testing.assert_allclose(out['footprint'][i],
                               _indicator(corner, pong.PADDLE_SHAPE),
                               atol=1e-9)
  # The player's colour share now covers both paddles.
  base = np.asarray(pong.object_maps(pong.resize_frames(screen)))[..., 1]
  shares = np.asarray(pong.object_maps(out['image']))[..., 1]
  np.testing.assert_allclose(shares - base, out['footprint'], atol=0.03)
  with pytest.raises(ValueError, match='outside the play field'):
    pong.craft_duplicates(screen, [[0, 10]])


def test_duplicate_placements_column_vs_elsewhere():
  screen = _screen(player=(60, 140))
  p = pong.duplicate_placements(screen, 50, seed=0)
  h, w = pong.PADDLE_SHAPE
  col = p['column']
  assert (col[:, 1] == pong.PLAYER_COLS[0]).all()
  # Never overlapping the paddle (rows 60-75), always inside the field.
  assert ((col[:, 0] + h <= 60) | (col[:, 0] >= 76)).all()
  assert (col[:, 0] >= pong.FIELD_ROWS[0]).all()
  assert (col[:, 0] + h <= pong.FIELD_ROWS[1]).all()
  columns = pong.column_region(pong.PLAYER_COLS) | pong.column_region(
      pong.OPPONENT_COLS)
  feet = pong.craft_duplicates(screen, p['elsewhere'])['footprint']
  assert not ((feet > 0) & columns).any()
  feet_col = pong.craft_duplicates(screen, col)['footprint']
  assert ((feet_col > 0) <= pong.column_region(pong.PLAYER_COLS)).all()
  assert len(np.unique(p['elsewhere'][:, 1])) > 10  # spread over the field
  again = pong.duplicate_placements(screen, 50, seed=0)
  np.testing.assert_array_equal(again['elsewhere'], p['elsewhere'])


def test_duplicate_errors_kept_lost_and_as_ball():
  screen = _screen(player=(60, 140))
  crafted = pong.craft_duplicates(screen, [[120, 80]])
  x = pong.to_float(crafted['image'])
  foot = crafted['footprint']
  same = pong.duplicate_errors(x, x, foot)
  assert float(same['kept'][0]) == pytest.approx(1.0, abs=1e-4)
  assert float(same['mse'][0]) == pytest.approx(0.0, abs=1e-12)
  assert float(same['as_ball'][0]) == pytest.approx(0.0, abs=0.02)
  gone = pong.to_float(pong.resize_frames(screen))[None]
  lost = pong.duplicate_errors(x, gone, foot)
  assert float(lost['kept'][0]) == pytest.approx(0.0, abs=0.02)
  assert float(lost['mse'][0]) > 0.01
  white = np.array(screen)
  white[120:136, 80:84] = pong.WHITE
  as_ball = pong.duplicate_errors(
      x, pong.to_float(pong.resize_frames(white))[None], foot)
  assert float(as_ball['as_ball'][0]) == pytest.approx(1.0, abs=0.05)
  assert float(as_ball['kept'][0]) == pytest.approx(0.0, abs=0.02)


# ----------------------------------------------------------------------------
# Batches.


def test_sample_batch_jit_values_and_range():
  frames = np.random.default_rng(0).integers(0, 256, (10, 64, 64, 3),
                                             dtype=np.uint8)
  data = {'frames': jnp.asarray(frames)}
  fn = jax.jit(lambda d, k: pong.sample_batch(d, k, batch_size=6))
  key = jax.random.key(3)
  x = np.asarray(fn(data, key))
  assert x.shape == (6, 64, 64, 3) and x.dtype == np.float32
  idx = np.asarray(jax.random.randint(key, (6,), 0, 10))
  np.testing.assert_allclose(x, frames[idx] / 255.0, rtol=1e-6)
  assert not np.array_equal(x, fn(data, jax.random.key(4)))


def test_shard_seeds_distinct_and_checked():
  seeds = {pong.shard_seeds(0, s, i) for s in pong.SPLITS for i in range(3)}
  seeds |= {pong.shard_seeds(1, 'train', 0)}
  assert len(seeds) == 7
  assert pong.shard_seeds(0, 'train', 1) == pong.shard_seeds(0, 'train', 1)
  with pytest.raises(ValueError, match='split'):
    pong.shard_seeds(0, 'validation', 0)


def test_config_names_and_errors():
  cfg = pong.config(100, 20, seed=3, shard_size=50)
  assert cfg.name == 'n100_20_seed3_shard50' and cfg.num_train == 100
  assert pong.builder_kwargs(cfg) == {'config': cfg}
  tiny = pong.PongFrames.BUILDER_CONFIGS[0]
  assert pong.builder_kwargs(pong.config(tiny.num_train, tiny.num_test,
                                         shard_size=tiny.shard_size)) == {
                                             'config': tiny.name}
  with pytest.raises(ValueError, match='num_train'):
    pong.config(0, 10)
  with pytest.raises(ValueError, match='split'):
    pong.load('valid', num_train=10, num_test=10)


# ----------------------------------------------------------------------------
# The emulator and the TFDS dataset.


@needs_ale
def test_generation_is_deterministic_per_shard_and_objects_are_read_exactly():
  a = pong.generate_shard(0, 'train', 0, 300)
  b = pong.generate_shard(0, 'train', 0, 300)
  c = pong.generate_shard(0, 'train', 1, 300)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  assert not np.array_equal(a['image'], c['image'])
  assert a['image'].shape == (300, 64, 64, 3) and a['image'].dtype == np.uint8
  assert (a['step'] >= 1).all()
  # The real screens: object_maps reads the ball's and paddles' shares back.
  screens = np.stack([s for s, _, _ in pong.play(
      *pong.shard_seeds(0, 'train', 0), 300)])
  np.testing.assert_array_equal(pong.resize_frames(screens), a['image'])
  maps = np.asarray(pong.object_maps(a['image']))
  field = np.zeros(pong.SCREEN, bool)
  field[pong.FIELD_ROWS[0]:pong.FIELD_ROWS[1]] = True
  for ch, colour in enumerate((pong.WHITE, pong.PLAYER, pong.OPPONENT)):
    hit = (screens == np.asarray(colour, np.uint8)).all(-1) & field
    truth = pong.area_resize(hit[..., None].astype(np.float64))[..., 0]
    np.testing.assert_allclose(maps[..., ch], truth, atol=0.03)
  # The ball flag agrees with the maps; the ball stays visible after resize.
  peak = maps[..., 0].max((1, 2))
  assert 0.2 < a['ball'].mean() < 0.95
  assert (peak[~a['ball']] < 0.03).all()
  assert np.mean(peak[a['ball']] >= 0.25) > 0.95


@needs_ale
def test_tfds_builder_prepares_and_reads_without_tensorflow(tmp_path):
  """Prepare the tiny config in a subprocess where TensorFlow is unimportable."""
  code = f'''
import builtins, sys
real = builtins.__import__
def guarded(name, *a, **k):
  if name == 'tensorflow' or name.startswith('tensorflow.'):
    raise ImportError('TensorFlow blocked by the test')
  return real(name, *a, **k)
builtins.__import__ = guarded
import numpy as np, tensorflow_datasets as tfds
from lanjax.data import pong
d = pong.load('test', num_train=256, num_test=128, shard_size=128,
              data_dir={str(tmp_path)!r})
ref = pong.generate_shard(0, 'test', 0, 128)
assert d['image'].shape == (128, 64, 64, 3), d['image'].shape
assert (d['image'] == ref['image']).all() and (d['ball'] == ref['ball']).all()
src = tfds.data_source('pong_frames', split='train', data_dir={str(tmp_path)!r},
                       builder_kwargs={{'config': 'n256_128_seed0_shard128'}})
assert len(src) == 256
assert (src[200]['image'] == pong.generate_shard(0, 'train', 1, 128)['image'][72]).all()
print('OK', 'tensorflow' in sys.modules)
'''
  out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                       text=True, env=subprocess_env(), timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'OK False' in out.stdout


@needs_ale
def test_preparing_holds_one_shard_at_a_time_and_writes_each_to_its_file(
    tmp_path, monkeypatch):
  """300 train frames in shards of 64 (the last one 44): each generated
  shard is freed before the next is generated, and is its own file."""
  import glob
  import weakref
  real = pong.generate_shard
  live = {'now': 0, 'max': 0, 'made': 0}

  def gone():
    live['now'] -= 1

  def counted(seed, split, shard, num_frames):
    out = real(seed, split, shard, num_frames)
    live['now'] += 1
    live['made'] += 1
    live['max'] = max(live['max'], live['now'])
    weakref.finalize(out['image'], gone)
    return out

  monkeypatch.setattr(pong, 'generate_shard', counted)
  kw = dict(num_train=300, num_test=64, shard_size=64, data_dir=str(tmp_path))
  got = pong.load('train', **kw)
  assert live['made'] == 5 + 1 and live['max'] == 1, live
  files = glob.glob(str(tmp_path / 'pong_frames' / '*' / '*' /
                        'pong_frames-train.array_record-*'))
  assert len(files) == 5, files
  # In play order: shard s holds frames 64 s ... 64 s + 63.
  want = np.concatenate([real(0, 'train', s, min(64, 300 - 64 * s))['image']
                         for s in range(5)])
  np.testing.assert_array_equal(got['image'], want)


# ----------------------------------------------------------------------------
# The autoencoder F and the LAN A.


def test_autoencoder_architecture_is_appendix_d():
  f = ConvAutoencoder((64, 64, 3), rngs=nnx.Rngs(0))
  kernels = [tuple(l.kernel.shape) for l in [*f.encoder, *f.decoder]]
  assert kernels == [(5, 5, 3, 16), (5, 5, 16, 32), (5, 5, 32, 64),
                     (5, 5, 64, 32), (5, 5, 32, 16), (5, 5, 16, 3)]
  x = jax.random.uniform(jax.random.key(0), (2, 64, 64, 3))
  # Intermediate sizes: 64 -> 32 -> 16 -> 8 -> 16 -> 32 -> 64.
  h = x
  sizes = []
  for layer in [*f.encoder, *f.decoder]:
    h = layer(h)
    sizes.append(h.shape[1])
  assert sizes == [32, 16, 8, 16, 32, 64]
  y = f(x)
  assert y.shape == x.shape
  assert float(y.min()) > 0 and float(y.max()) < 1  # sigmoid output


def test_autoencoder_errors_and_dropout():
  with pytest.raises(ValueError, match='divisible'):
    ConvAutoencoder((60, 64, 3), rngs=nnx.Rngs(0))
  f = ConvAutoencoder((64, 64, 3), dropout_rate=0.5, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='frames of shape'):
    f(jnp.zeros((1, 32, 32, 3)))
  x = jax.random.uniform(jax.random.key(0), (1, 64, 64, 3))
  np.testing.assert_array_equal(f(x), f(x))
  a = f(x, dropout_key=jax.random.key(1))
  assert not np.allclose(a, f(x))
  plain = ConvAutoencoder((64, 64, 3), rngs=nnx.Rngs(0))
  np.testing.assert_array_equal(plain(x, dropout_key=jax.random.key(1)),
                                plain(x))


def _frames(n):
  """``n`` synthetic frames (uint8) with the ball and both paddles moving."""
  return pong.resize_frames(np.stack([
      _screen(ball=(60 + 9 * (i % 12), 30 + 7 * (i % 14)),
              player=(40 + 11 * (i % 10), 140),
              opponent=(150 - 9 * (i % 11), 16)) for i in range(n)]))


def _data(n_train=16, n_test=12):
  test = _frames(n_train + n_test)[n_train:]
  return {'train': {'frames': _frames(n_train)},
          'test': {'frames': test, 'ball': np.ones(len(test), bool)}}


def test_autoencoder_trains_through_the_skeleton_with_squared_error():
  """The skeleton's F step with the task's f_loss trains the autoencoder."""
  from lanjax.experiments import pong as pong_exp
  from lanjax.experiments import skeleton
  config = load_config('pong', 'quick')
  config.f.learning_rate = 3e-3
  task = pong_exp.make_task(config, _data())
  graphdef, state = skeleton.initial_state(task.make_f, config.f)
  update = jax.jit(skeleton.f_update(config, task, graphdef))
  key = jax.random.key(0)
  x = task.f_batch(task.train_data, jax.random.split(key)[0])['x']
  f = nnx.merge(graphdef, state['params'])
  want = float(jnp.mean(jnp.square(f(x) - x)))
  state, m = update(state, task.train_data, key)
  assert float(m['loss']) == pytest.approx(want, rel=1e-4)
  assert 'accuracy' not in m  # no labels: not a classifier's metrics
  losses = []
  for i in range(1, 40):
    state, m = update(state, task.train_data, jax.random.fold_in(key, i))
    losses.append(float(m['loss']))
  assert np.mean(losses[-5:]) < 0.5 * want
  # f_eval is the held-out squared error of the same F.
  test_x = pong.to_float(_data()['test']['frames'])
  f = nnx.merge(graphdef, state['params'])
  got = float(task.f_eval(f)['mse'])
  assert got == pytest.approx(float(jnp.mean(jnp.square(f(test_x) - test_x))),
                              rel=1e-4)


def test_windowed_task_reads_windows_and_bootstraps_from_the_window(
    tmp_path):
  """``config.data.window_frames``: F's and A's data are windows of the
  frames, A's noise pool is the window's own device buffer, and a window
  that A's batch does not divide is refused before anything trains."""
  from lanjax import training
  from lanjax.experiments import pong as pong_exp
  from lanjax.experiments import skeleton
  frames = _frames(48)

  class Source:  # random access, as tfds.data_source
    def __len__(self):
      return len(frames)

    def __getitem__(self, i):
      return {'image': frames[i], 'ball': True}

  config = load_config('pong', 'quick')  # batches of 8, shards of 128
  config.data.window_frames = 16
  data = {'train': training.windows.from_source(
      Source(), 16, {'frames': 'image'}, field='config.data.window_frames'),
          'test': _data()['test']}
  task = pong_exp.make_task(config, data)
  assert pong_exp.num_train(data) == 48
  assert skeleton.f_data(config, task).steps_per_window == 2
  lan = skeleton.lan_data(task, {'w': jnp.ones(1)}, 8).load(2, jax.device_put)
  np.testing.assert_array_equal(lan['frames'], frames[32:48])
  assert lan['noise'].pool is lan['frames']  # no second copy of the window
  assert set(lan) == {'frames', 'f_params', 'noise'}
  # The evaluation's pool: the first min(window, shard) frames.
  np.testing.assert_array_equal(task.noise.pool, frames[:16])
  config.lan.batch_size = 12
  with pytest.raises(ValueError, match='config.data.window_frames=16 must be '
                     'a multiple of config.lan.batch_size=12'):
    skeleton.train_task(config, task, str(tmp_path))
  assert not os.listdir(tmp_path)  # refused before F trained


def test_bootstrap_noise_draws_training_frames_in_unit_range():
  from lanjax.experiments import pong as pong_exp
  config = load_config('pong', 'quick')
  data = _data()
  task = pong_exp.make_task(config, data)
  x = jnp.zeros((5, 64, 64, 3))
  eta = task.noise.sample(jax.random.key(0), x, 3)
  assert eta.shape == (3, 5, 64, 64, 3) and eta.dtype == jnp.float32
  pool = pong.to_float(data['train']['frames']).reshape(16, -1)
  for e in np.asarray(eta).reshape(15, -1):  # every draw is a training frame
    assert np.abs(pool - e).max(-1).min() < 1e-6
  # The LAN's mask is 64x64x1, tiled over the colours by the corruption.
  a = task.make_lan()
  assert a(x).shape == (5, 64, 64, 1)


def test_reconstruction_score_is_negative_squared_error():
  from lanjax.experiments import pong as pong_exp
  x = jnp.zeros((2, 4, 4, 3))
  out = x.at[0].set(0.5).at[1, 0, 0, 0].set(1.0)
  np.testing.assert_allclose(pong_exp.reconstruction_score(out, x),
                             [-0.25, -1.0 / 48], rtol=1e-6)


def test_lan_mask_tiles_over_channels():
  a = LatentAttentionNetwork((64, 64, 3), (500,), mask_shape=(64, 64, 1),
                             rngs=nnx.Rngs(0))
  f = ConvAutoencoder((64, 64, 3), rngs=nnx.Rngs(0))
  import lanjax
  x = jax.random.uniform(jax.random.key(0), (2, 64, 64, 3))
  shapes = lanjax.check_lan_setup(
      f, a, x, lanjax.BootstrapNoise(x), num_samples=2,
      output_loss=lanjax.squared_error)
  assert shapes['mask'].shape == (2, 64, 64, 1)
  assert shapes['fidelity_loss'].shape == (2,)


# ----------------------------------------------------------------------------
# Figures and config.


def test_figures_write_pngs(tmp_path):
  frames = pong.to_float(pong.resize_frames(np.stack(
      [_screen(ball=(100, 75), player=(60, 140))] * 3)))
  maps = np.random.default_rng(0).random((3, 64, 64, 1))
  p5 = tmp_path / 'fig5.png'
  figures.frame_pairs(frames, maps, p5, title='t',
                      columns=pong.column_region())
  p6 = tmp_path / 'fig6.png'
  figures.input_output_pairs(frames, frames, p6, titles=['a', 'b', 'c'],
                             footprints=np.random.default_rng(1).random(
                                 (3, 64, 64)))
  for p in (p5, p6):
    assert p.stat().st_size > 5_000
    assert p.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_config_variants():
  base = load_config('pong')
  quick = load_config('pong', 'quick')
  paper = load_config('pong', 'paper')
  assert paper.f.num_steps == 100_000 and paper.lan.num_steps == 30_000
  assert paper.data.num_train == 3_200_000
  assert paper.f.learning_rate == 5e-5 and paper.lan.learning_rate == 1e-5
  assert paper.lan.beta == 0.0005 and paper.lan.noise == 'bootstrap'
  assert tuple(paper.lan.mask_shape) == (64, 64, 1)
  assert quick.f.num_steps < base.f.num_steps <= paper.f.num_steps
  assert quick.data.num_train < base.data.num_train
  with pytest.raises(ValueError, match='Unknown variant'):
    load_config('pong', 'huge')


# ----------------------------------------------------------------------------
# The experiment's evaluation and claims (lanjax.experiments.pong).


def _column_only(x):
  """An 'autoencoder' that reconstructs the paddles' columns, nothing else."""
  cols = pong.column_region(pong.PLAYER_COLS) | pong.column_region(
      pong.OPPONENT_COLS)
  bg = jnp.asarray(pong.background() / 255.0, jnp.float32)
  return jnp.where(cols[..., None], x, bg)


def _trained(f, a):
  from lanjax.experiments import skeleton
  return skeleton.Trained(f=f, a=a, f_apply=lambda p, x: f(x), f_params={},
                          lan_params={}, f_step=0, lan_step=0)


def _eval_config():
  config = load_config('pong', 'quick')
  config.eval.compare_examples = 0
  config.eval.num_placements = 30
  return config


@needs_ale
@pytest.mark.parametrize('case', ['diagnosis', 'identity_uniform'])
def test_evaluate_claims_hold_only_for_the_papers_diagnosis(tmp_path, case):
  """A column-only F with a fixed column mask makes the claims hold; a
  perfect F with a uniform mask makes the map and duplicate claims fail."""
  from lanjax.experiments import pong as pong_exp
  config = _eval_config()
  data = _data()
  task = pong_exp.make_task(config, data)
  cols = pong.column_region(pong.PLAYER_COLS) | pong.column_region(
      pong.OPPONENT_COLS)
  if case == 'diagnosis':
    fixed = jnp.where(cols, 0.05, 0.95)[..., None]
    trained = _trained(_column_only, lambda x: jnp.broadcast_to(
        fixed, x.shape[:1] + fixed.shape))
  else:
    trained = _trained(lambda x: x, lambda x: jnp.full(
        x.shape[:1] + (64, 64, 1), 0.5))
  m = pong_exp.evaluate(config, data, task, trained, str(tmp_path))
  c = {k: v['holds'] for k, v in m['claims'].items()}
  dup = m['duplicate']
  if case == 'diagnosis':
    assert m['mask_relative_spread'] == pytest.approx(0.0, abs=1e-6)
    assert m['mask_relative_spread_permuted'] > 0.1
    assert m['importance_share_paddle_columns']['mean'] == pytest.approx(
        0.95 * cols.sum() / (0.95 * cols.sum() + 0.05 * (~cols).sum()),
        rel=1e-4)
    assert dup['column']['kept']['mean'] > 0.8
    assert dup['elsewhere']['kept']['mean'] < 0.05
    # The ball is lost, yet the frame's error stays low: it is a few pixels.
    assert m['f_ball_kept']['mean'] < 0.1
    assert m['f_test_mse_on_ball_pixels'] > 20 * m['f_test_mse']
    assert c == {'f_reconstructs_frames': True,
                 'importance_on_paddle_columns': True,
                 'mask_is_a_fixed_paddle_column_map': True,
                 'duplicate_kept_in_column_not_elsewhere': True}
  else:
    assert m['f_test_mse'] == pytest.approx(0.0, abs=1e-9)
    assert m['f_ball_kept']['mean'] == pytest.approx(1.0, abs=1e-4)
    assert dup['column']['kept']['mean'] == pytest.approx(1.0, abs=0.02)
    assert dup['elsewhere']['kept']['mean'] == pytest.approx(1.0, abs=0.02)
    assert m['importance_share_paddle_columns']['mean'] == pytest.approx(
        m['area_share_paddle_columns'], rel=1e-4)
    assert c == {'f_reconstructs_frames': True,
                 'importance_on_paddle_columns': False,
                 'mask_is_a_fixed_paddle_column_map': False,
                 'duplicate_kept_in_column_not_elsewhere': False}
  for name in ('fig5_frames_and_importance.png', 'fig5_reconstructions.png',
               'fig6_duplicate_paddle.png'):
    assert (tmp_path / name).stat().st_size > 5_000


@needs_ale
@pytest.mark.slow
def test_quick_experiment_end_to_end_generates_frames(tmp_path):
  """train.py on the quick config: frames generated into a fresh TFDS dir,
  F and A trained, figures, the comparison table, and every claim false."""
  import json
  out = tmp_path / 'run'
  env = subprocess_env(TFDS_DATA_DIR=str(tmp_path / 'tfds'))
  proc = subprocess.run(
      [sys.executable, 'train.py', '--config', 'configs/pong.py:quick',
       '--workdir', str(out),
       # Every method runs end to end in the translated-MNIST mock test.
       "--config.eval.methods=('lan','gradient','random')"],
      cwd=str(ROOT), env=env,
      capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert (tmp_path / 'tfds' / 'pong_frames').is_dir()
  m = json.loads((out / 'metrics.json').read_text())
  config = load_config('pong', 'quick')
  assert m['experiment'] == 'pong' and m['f_step'] == config.f.num_steps
  assert m['lan_step'] == config.lan.num_steps
  assert m['num_train_frames'] == config.data.num_train
  assert set(m['comparison']['methods']) == {'lan', 'gradient', 'random'}
  assert 'deletion_auc/noise' in m['comparison']['metrics']
  assert [s for s, _ in m['f_learning_curve']] == [10, 20]
  assert m['claims'] and not any(m['claims'].values())
  assert set(m['claims']) == set(m['claims_detail'])
  for name in ('fig5_frames_and_importance.png', 'fig6_duplicate_paddle.png',
               'perturbation_curves.png'):
    assert (out / name).stat().st_size > 1_000
  table = (out / 'comparison.md').read_text()
  assert all(f'| {m} |' in table for m in ('lan', 'gradient', 'random'))


def test_figure_frames_pick_frames_with_the_ball_spread_out():
  from lanjax.experiments import pong as pong_exp
  has = np.zeros(100, bool)
  has[10:90:2] = True  # 40 frames with a ball
  pick = pong_exp.figure_frames(has, 5)
  assert has[pick].all() and len(set(pick)) == 5
  assert pick[0] == 10 and pick[-1] == 88  # first and last ball frames
  np.testing.assert_array_equal(pong_exp.figure_frames(has[:12], 4),
                                np.arange(4))  # too few: the first frames
