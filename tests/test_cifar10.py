"""CIFAR-10 pieces (section 5.2): data, augmentation, F and A, mask metrics,
Fig. 4 and the config; on generated data, plus the real data where present."""

import doctest
import json
import math
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tensorflow_datasets as tfds
from flax import nnx
from jax import test_util as jtu

import lanjax
from lanjax import metrics
from lanjax import training
from lanjax.data import cifar10 as c10
from lanjax.data import tfds_data
from lanjax.experiments import figures
from lanjax.models import cifar
from lanjax.experiments import cifar10 as experiment
from lanjax.experiments import get_experiment
from lanjax.experiments import skeleton
from conftest import ROOT, SHARED, load_config, subprocess_env


def _shared_dir():
  """../shared, or $LANJAX_SHARED_DIR, or the parent of $TFDS_DATA_DIR
  (worktrees outside the main checkout)."""
  tfds_dir = os.environ.get('TFDS_DATA_DIR', '')
  for d in (SHARED, os.environ.get('LANJAX_SHARED_DIR', ''),
            os.path.dirname(tfds_dir.rstrip('/')) if tfds_dir else ''):
    if d and (pathlib.Path(d) / 'tensorflow_datasets' / 'cifar10').is_dir():
      return pathlib.Path(d)
  pytest.skip('../shared/tensorflow_datasets/cifar10 not present')


def _images(n, seed=0):
  return np.random.RandomState(seed).randint(0, 256, (n, 32, 32, 3)).astype(
      np.uint8)


# ----------------------------------------------------------------------------
# Loading.


def test_official_order_sorts_by_the_index_in_the_ids():
  order, index = c10.official_order(
      ['train_00007', 'train_00002', 'train_00005'])
  np.testing.assert_array_equal(order, [1, 2, 0])
  np.testing.assert_array_equal(index, [2, 5, 7])
  assert c10.official_order(['random text', 'more']) is None
  assert c10.official_order(['test_1', 'test_1']) is None  # duplicates


def test_load_split_on_mock_data_is_uint8_with_labels(tmp_path):
  with tfds.testing.mock_data(num_examples=12):
    d = c10.load_split('train', data_dir=str(tmp_path / 'none'))
  assert d['image'].shape == (12, 32, 32, 3) and d['image'].dtype == np.uint8
  assert d['label'].dtype == np.int32 and d['label'].shape == (12,)
  assert d['label'].min() >= 0 and d['label'].max() <= 9
  assert d['data_note'] == c10.DATA_NOTE_OFFICIAL


def test_load_split_without_data_says_what_to_do(tmp_path):
  with pytest.raises(tfds_data.DatasetNotFoundError) as e:
    c10.load_split('test', data_dir=str(tmp_path / 'a'),
                   offline_data_dir=str(tmp_path / 'b'), download=False)
  msg = str(e.value)
  assert str(tmp_path / 'a') in msg and str(tmp_path / 'b') in msg
  assert 'download=True' in msg and 'TFDS_DATA_DIR' in msg
  with pytest.raises(ValueError, match='split'):
    c10.load_split('validation')


def test_data_note_reads_the_dataset_description(tmp_path):
  for description, note in (
      ('OFFLINE COPY: JPEG reconstructions', c10.DATA_NOTE_OFFLINE_JPEG),
      ('The CIFAR-10 dataset consists of', c10.DATA_NOTE_OFFICIAL)):
    d = tmp_path / description[:3] / 'cifar10' / '3.0.2'
    d.mkdir(parents=True)
    (d / 'dataset_info.json').write_text(
        json.dumps({'description': description}))
    assert c10.data_note(str(tmp_path / description[:3])) == note
  assert 'JPEG' in c10.DATA_NOTE_OFFLINE_JPEG
  assert '30' in c10.DATA_NOTE_OFFLINE_JPEG  # the PSNR


def test_real_test_split_is_in_official_order_and_jpeg():
  shared = _shared_dir()
  d = c10.load_split('test', data_dir='/nonexistent_lanjax',
                     offline_data_dir=str(shared / 'tensorflow_datasets'),
                     download=False)
  assert d['image'].shape == (10_000, 32, 32, 3)
  np.testing.assert_array_equal(d['index'], np.arange(10_000))
  assert d['data_note'] == c10.DATA_NOTE_OFFLINE_JPEG
  np.testing.assert_array_equal(np.bincount(d['label']), [1000] * 10)
  lossless_path = shared / 'data' / 'cifar10' / 'lossless_subset.npz'
  if lossless_path.exists():
    lossless = c10.load_lossless_subset(str(lossless_path))
    np.testing.assert_array_equal(d['label'][:1000], lossless['test_label'])
    p = c10.psnr(d['image'][:1000], lossless['test_image'])
    assert 28 < np.median(p) < 33  # a JPEG copy: close, not exact
    # F-free check of jpeg_effect: a "classifier" reading mean colour.
    predict = lambda x: jnp.stack([x[..., i].mean((1, 2)) for i in range(3)]
                                  + [jnp.zeros(x.shape[0])] * 7, -1)
    effect = c10.jpeg_effect(predict, d['image'][:200],
                             lossless['test_image'][:200],
                             lossless['test_label'][:200])
    assert effect['num_examples'] == 200
    assert 0.8 < effect['prediction_agreement'] <= 1.0
    assert 28 < effect['psnr_median_db'] < 33


def test_jpeg_effect_counts_accuracy_and_agreement():
  a = np.zeros((4, 32, 32, 3), np.uint8)
  b = a.copy()
  b[2:] = 255  # examples 2, 3 differ
  predict = lambda x: jnp.stack([1 - x.mean((1, 2, 3)), x.mean((1, 2, 3))], -1)
  e = c10.jpeg_effect(predict, a, b, np.array([0, 0, 1, 1]))
  assert e['accuracy_jpeg'] == 0.5 and e['accuracy_original'] == 1.0
  assert e['prediction_agreement'] == 0.5
  with pytest.raises(ValueError, match='same examples'):
    c10.jpeg_effect(predict, a, b[:2], np.array([0, 0]))


def test_load_lossless_subset_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match='lossless'):
    c10.load_lossless_subset(str(tmp_path / 'x.npz'))


# ----------------------------------------------------------------------------
# Augmentation.


def _ident(b):
  return c10.affine_matrices(jnp.zeros(b), jnp.ones(b), jnp.zeros((b, 2)))


def test_identity_affine_is_the_identity():
  x = jax.random.uniform(jax.random.key(0), (3, 32, 32, 3))
  y = jax.jit(c10.affine_transform)(x, _ident(3))
  np.testing.assert_allclose(y, x, atol=1e-6)


def test_a_known_shift_moves_a_pixel():
  x = jnp.zeros((1, 32, 32, 1)).at[0, 10, 10, 0].set(1.0)
  m = c10.affine_matrices(jnp.zeros(1), jnp.ones(1), jnp.array([[1., 2.]]))
  y = c10.affine_transform(x, m, mode='constant')
  assert float(y[0, 11, 12, 0]) == pytest.approx(1.0, abs=1e-6)
  assert float(y.sum()) == pytest.approx(1.0, abs=1e-5)
  # A half-pixel shift splits the pixel between two (bilinear).
  m = c10.affine_matrices(jnp.zeros(1), jnp.ones(1), jnp.array([[0., 0.5]]))
  y = c10.affine_transform(x, m, mode='constant')
  np.testing.assert_allclose(y[0, 10, 10:12, 0], [0.5, 0.5], atol=1e-6)
  m = c10.affine_matrices(jnp.zeros(1), jnp.ones(1), jnp.array([[0.5, 0.]]))
  y = c10.affine_transform(x, m, mode='constant')
  np.testing.assert_allclose(y[0, 10:12, 10, 0], [0.5, 0.5], atol=1e-6)
  assert float(y.sum()) == pytest.approx(1.0, abs=1e-5)


def test_quarter_turn_is_rot90_and_borders_follow_the_mode():
  x = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3))
  m = c10.affine_matrices(jnp.full(2, math.pi / 2), jnp.ones(2),
                          jnp.zeros((2, 2)))
  y = c10.affine_transform(x, m)
  np.testing.assert_allclose(y, np.rot90(np.asarray(x), axes=(1, 2)),
                             atol=1e-5)
  shift = c10.affine_matrices(jnp.zeros(2), jnp.ones(2),
                              jnp.array([[3., 0.]] * 2))
  const = c10.affine_transform(x, shift, mode='constant')
  edge = c10.affine_transform(x, shift, mode='edge')
  np.testing.assert_allclose(const[:, :3], 0.0)
  np.testing.assert_allclose(edge[:, :3], np.broadcast_to(
      np.asarray(x)[:, :1], (2, 3, 32, 3)), atol=1e-6)
  np.testing.assert_allclose(edge[:, 3:], np.asarray(x)[:, :29], atol=1e-6)
  with pytest.raises(ValueError, match='mode'):
    c10.affine_transform(x, shift, mode='wrap')


def test_zoom_scales_distances_from_the_centre():
  x = jnp.zeros((1, 32, 32, 1)).at[0, 19, 15, 0].set(1.0)  # (3.5, -0.5)
  m = c10.affine_matrices(jnp.zeros(1), jnp.full(1, 2.0), jnp.zeros((1, 2)))
  y = np.asarray(c10.affine_transform(x, m, mode='constant'))[0, ..., 0]
  # Zoom 2 about the centre (15.5, 15.5): the pixel's centre lands at
  # (22.5, 14.5); each of the four nearest outputs reads it with weight
  # 0.75 * 0.75.
  np.testing.assert_allclose(y[22:24, 14:16], 0.5625, atol=1e-6)
  rows, cols = np.mgrid[:32, :32]
  assert (y * rows).sum() / y.sum() == pytest.approx(22.5, abs=1e-5)
  assert (y * cols).sum() / y.sum() == pytest.approx(14.5, abs=1e-5)


def test_random_affine_is_small_varied_and_identity_at_zero():
  x = jax.random.uniform(jax.random.key(2), (8, 32, 32, 3))
  y = jax.jit(c10.random_affine)(jax.random.key(0), x)
  diffs = np.abs(np.asarray(y - x)).mean((1, 2, 3))
  assert (diffs > 1e-3).all()  # every image moved
  assert len(set(np.round(diffs, 6))) == 8  # each by its own transform
  zero = c10.AffineRange(0.0, 0.0, 0.0)
  np.testing.assert_allclose(c10.random_affine(jax.random.key(0), x, zero), x,
                             atol=1e-6)
  with pytest.raises(ValueError, match='max_shift'):
    c10.AffineRange(max_shift=-1.0)
  with pytest.raises(ValueError, match='max_scale_change'):
    c10.AffineRange(max_scale_change=1.0)


# ----------------------------------------------------------------------------
# Batches and noise.


def test_sample_batch_reads_scaled_images_with_their_labels():
  images = _images(50)
  labels = np.arange(50, dtype=np.int32) % 10
  data = {'image': jnp.asarray(images), 'label': jnp.asarray(labels)}
  batch = jax.jit(c10.batch_fn(16))(data, jax.random.key(0))
  assert batch['x'].shape == (16, 32, 32, 3)
  assert batch['x'].dtype == jnp.float32
  flat = images.reshape(50, -1).astype(np.float32) / 255.0
  xb = np.asarray(batch['x']).reshape(16, -1)
  for i in range(16):
    j = int(np.argmin(np.abs(flat - xb[i]).sum(-1)))
    np.testing.assert_allclose(xb[i], flat[j], atol=1e-6)
    assert int(batch['y'][i]) == labels[j]
  aug = jax.jit(c10.batch_fn(16, augment=c10.AffineRange()))(
      data, jax.random.key(0))
  np.testing.assert_array_equal(aug['y'], batch['y'])  # same draw of examples
  assert float(jnp.abs(aug['x'] - batch['x']).mean()) > 1e-3
  assert 0.0 <= float(aug['x'].min()) and float(aug['x'].max()) <= 1.0
  x = jax.jit(c10.lan_batch_fn(16))(data, jax.random.key(0))
  np.testing.assert_allclose(x, batch['x'])
  other = c10.batch_fn(16)(data, jax.random.key(1))
  assert not np.array_equal(other['x'], batch['x'])


def test_bootstrap_noise_draws_training_images_in_unit_range():
  images = _images(6)
  noise = c10.bootstrap_noise(images)
  eta = jax.jit(lambda n, k, x: n.sample(k, x, 3))(
      noise, jax.random.key(0), jnp.zeros((4, 32, 32, 3)))
  assert eta.shape == (3, 4, 32, 32, 3) and eta.dtype == jnp.float32
  pool = images.reshape(6, -1) / 255.0
  for draw in np.asarray(eta).reshape(12, -1):
    assert np.abs(pool - draw).sum(-1).min() < 1e-3
  with pytest.raises(ValueError, match='uint8'):
    c10.bootstrap_noise(images / 255.0)


def test_select_by_class_picks_rows_per_column():
  labels = np.array([7, 0, 7, 9, 0, 7, 9, 2, 2, 8, 8, 4, 4])
  idx = c10.select_by_class(labels, ('horse', 'airplane'), rows=2)
  np.testing.assert_array_equal(idx, [[0, 1], [2, 4]])
  preds = labels.copy()
  preds[0] = 3  # the first horse is misclassified
  idx = c10.select_by_class(labels, ('horse',), rows=2, predictions=preds)
  np.testing.assert_array_equal(idx[:, 0], [2, 5])
  with pytest.raises(ValueError, match='Only 2'):
    c10.select_by_class(labels, ('truck',), rows=3)
  with pytest.raises(ValueError, match='plane'):
    c10.select_by_class(labels, ('plane',), rows=1)
  assert c10.FIG4_CLASSES == ('horse', 'airplane', 'truck', 'bird', 'ship',
                              'deer')


# ----------------------------------------------------------------------------
# Networks.


def test_local_response_norm_matches_a_direct_sum():
  x = jax.random.normal(jax.random.key(0), (2, 3, 7))
  y = cifar.local_response_norm(x, depth_radius=2, bias=2.0, alpha=0.3,
                                beta=0.6)
  xn = np.asarray(x, np.float64)
  want = np.empty_like(xn)
  for c in range(7):
    s = (xn[..., max(0, c - 2):c + 3] ** 2).sum(-1)
    want[..., c] = xn[..., c] / (2.0 + 0.3 * s) ** 0.6
  np.testing.assert_allclose(y, want, rtol=1e-5)
  jtu.check_grads(
      lambda v: cifar.local_response_norm(v, alpha=0.5), (x,), order=1,
      modes=['rev'], atol=1e-2, rtol=1e-2)


def _param_count(module):
  return sum(p.size for p in jax.tree.leaves(nnx.state(module, nnx.Param)))


def test_f_has_the_architecture_of_appendix_b():
  f = cifar.CifarConvNet(rngs=nnx.Rngs(0))
  shapes = [tuple(c.kernel.shape) for c in f.convs]
  assert shapes == [(5, 5, 3, 64), (5, 5, 64, 64), (3, 3, 64, 64),
                    (3, 3, 64, 64), (3, 3, 64, 32)]
  assert [c.strides for c in f.convs] == [2, 2, 1, 1, 2]
  # 32 -> 16 -> 8 -> 8 -> 8 -> 4: a 4x4x32 = 512 vector into FC(384).
  assert [tuple(d.kernel.shape) for d in f.dense] == [(512, 384), (384, 192)]
  assert tuple(f.head.kernel.shape) == (192, 10)
  convs = (75 * 64 + 64) + (1600 * 64 + 64) + 2 * (576 * 64 + 64) + (
      576 * 32 + 32)
  dense = (512 * 384 + 384) + (384 * 192 + 192) + (192 * 10 + 10)
  assert _param_count(f) == convs + dense


def test_f_inference_is_deterministic_and_training_uses_dropout():
  f = cifar.CifarConvNet(rngs=nnx.Rngs(0))
  x = jax.random.uniform(jax.random.key(1), (4, 32, 32, 3))
  y0 = f(x)
  np.testing.assert_array_equal(y0, f(x))
  t1 = f(x, dropout_key=jax.random.key(1))
  t2 = f(x, dropout_key=jax.random.key(2))
  assert float(jnp.abs(t1 - t2).max()) > 1e-4
  assert float(jnp.abs(t1 - y0).max()) > 1e-4
  no_drop = cifar.CifarConvNet(rngs=nnx.Rngs(0), conv_dropout_rate=0.0,
                               dense_dropout_rate=0.0)
  np.testing.assert_allclose(no_drop(x, dropout_key=jax.random.key(1)), y0,
                             rtol=1e-5, atol=1e-6)
  # LRN is applied: it matters once activations are large (TF's alpha is
  # small: 0.001 / 9).
  no_lrn = cifar.CifarConvNet(rngs=nnx.Rngs(0), lrn=False)
  big = 30.0 * x
  assert float(jnp.abs(no_lrn(big) - f(big)).max()) > 1e-2
  with pytest.raises(ValueError, match='input'):
    f(jnp.zeros((2, 28, 28, 3)))
  with pytest.raises(ValueError, match='conv_dropout_rate'):
    cifar.CifarConvNet(rngs=nnx.Rngs(0), conv_dropout_rate=1.0)


def test_dropout_keeps_the_expectation():
  x = jnp.ones((200_000,))
  y = cifar.dropout(jax.random.key(0), x, 0.3)
  assert abs(float((y == 0).mean()) - 0.3) < 0.01
  assert abs(float(y.mean()) - 1.0) < 0.01
  np.testing.assert_array_equal(cifar.dropout(None, x, 0.3), x)


def test_lan_mask_is_one_channel_tiled_over_rgb():
  a = cifar.cifar_lan(rngs=nnx.Rngs(0))
  assert [tuple(l.kernel.shape) for l in a.layers] == [
      (3072, 500), (500, 500), (500, 500), (500, 1024)]
  x = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3))
  mask = a(x)
  assert mask.shape == (2, 32, 32, 1)
  eta = jnp.zeros_like(x)
  x_tilde = lanjax.corrupt(x, mask, eta)
  np.testing.assert_allclose(x_tilde, x * (1 - mask), rtol=1e-6)


@pytest.mark.slow
def test_f_and_a_train_on_generated_images():
  """Colour tells the class: F learns it with augmentation in the jitted step;
  then one LAN step on F (bootstrap noise of uint8 images) is finite."""
  rs = np.random.RandomState(0)
  labels = rs.randint(0, 2, 256).astype(np.int32)
  base = np.where(labels[:, None, None, None] == 0, [200, 40, 40],
                  [40, 40, 200])
  images = np.clip(base + rs.randint(-30, 30, (256, 32, 32, 3)), 0,
                   255).astype(np.uint8)
  data = {'image': jnp.asarray(images), 'label': jnp.asarray(labels)}
  f = cifar.CifarConvNet(rngs=nnx.Rngs(0), convs=((8, 2, 5), (8, 2, 3)),
                         dense=(16,))
  graphdef, params = nnx.split(f, nnx.Param)
  tx = optax.adam(3e-3)
  update = training.jit(training.classifier_update(
      graphdef, tx, c10.batch_fn(32, augment=c10.AffineRange()),
      forward=lambda m, x, k: m(x, dropout_key=k)))
  state = training.init_state(params, tx)
  for i in range(40):
    state, m = update(state, data, jax.random.key(i))
  logits = nnx.merge(graphdef, state['params'])(c10.to_unit(images))
  assert float((jnp.argmax(logits, -1) == labels).mean()) > 0.95
  a = cifar.cifar_lan(rngs=nnx.Rngs(1), hidden=(16,))
  a_graphdef, a_params = nnx.split(a, nnx.Param)
  lan_tx = optax.adam(1e-3)
  lan = training.jit(training.lan_update(
      a_graphdef, lan_tx,
      lambda p, x: nnx.merge(graphdef, p)(x), c10.lan_batch_fn(8), beta=7.0,
      num_samples=2))
  lan_data = dict(data, f_params=state['params'],
                  noise=c10.bootstrap_noise(images))
  _, m = lan(training.init_state(a_params, lan_tx), lan_data,
             jax.random.key(0))
  assert np.isfinite(float(m['loss'])) and float(m['finite']) == 1.0


# ----------------------------------------------------------------------------
# Mask metrics.


def _pairwise(masks, labels, centre=True):
  z = np.asarray(masks, np.float64).reshape(len(masks), -1)
  if centre:
    z = z - z.mean(0)
  z = z / np.linalg.norm(z, axis=1, keepdims=True)
  sim = z @ z.T
  same = labels[:, None] == labels[None, :]
  off = ~np.eye(len(z), dtype=bool)
  return sim[same & off].mean(), sim[~same].mean()


def test_class_similarity_equals_the_pairwise_means():
  rs = np.random.RandomState(0)
  masks = rs.rand(23, 4, 4, 1)
  labels = rs.randint(0, 3, 23)
  for centre in (True, False):
    s = jax.jit(metrics.class_similarity, static_argnames=('num_classes',
                                                           'centre'))(
        masks, labels, num_classes=3, centre=centre)
    within, between = _pairwise(masks, labels, centre)
    assert float(s['within']) == pytest.approx(within, abs=1e-5)
    assert float(s['between']) == pytest.approx(between, abs=1e-5)
    assert float(s['gap']) == pytest.approx(within - between, abs=1e-5)
  for c in range(3):
    idx = labels == c
    w, _ = _pairwise(masks, labels, True)  # per class, centred on all
    z = masks.reshape(23, -1) - masks.reshape(23, -1).mean(0)
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    sim = z[idx] @ z[idx].T
    want = sim[~np.eye(idx.sum(), dtype=bool)].mean()
    assert float(s_c := metrics.class_similarity(
        masks, labels, num_classes=3)['within_per_class'][c]) == pytest.approx(
            want, abs=1e-5), s_c
  one = metrics.class_similarity(masks[:3], np.array([0, 1, 1]),
                                 num_classes=2)
  assert np.isnan(float(one['within_per_class'][0]))


def test_class_similarity_finds_shared_class_features_not_chance():
  rs = np.random.RandomState(1)
  prototypes = rs.rand(4, 64)
  labels = np.repeat(np.arange(4), 25)
  masks = prototypes[labels] + 0.5 * rs.rand(100, 64)  # class + own noise
  s = metrics.class_similarity(masks, labels, num_classes=4)
  null = metrics.permuted_class_gaps(jax.random.key(0), masks, labels,
                                     num_classes=4, num_permutations=50)
  assert null.shape == (50,)
  assert float(s['gap']) > 0.3
  assert float(s['gap']) > float(null.max())
  assert abs(float(null.mean())) < 0.05
  random = metrics.class_similarity(rs.rand(100, 64), labels, num_classes=4)
  assert abs(float(random['gap'])) < 0.05


def test_input_specificity_splits_spread_into_inputs_and_pattern():
  rs = np.random.RandomState(0)
  pattern = rs.rand(1, 8, 8)
  same = metrics.input_specificity(np.repeat(pattern, 5, 0))
  assert float(same['specific_fraction']) == pytest.approx(0.0, abs=1e-6)
  assert float(same['spread']) == pytest.approx(0.0, abs=1e-6)
  assert float(same['pattern_spread']) == pytest.approx(pattern.std(),
                                                        rel=1e-5)
  masks = rs.rand(7, 8, 8)
  s = metrics.input_specificity(masks)
  m = masks.reshape(7, -1)
  across = ((m - m.mean(0)) ** 2).mean()
  total = ((m - m.mean()) ** 2).mean()
  assert float(s['spread']) ** 2 == pytest.approx(across, rel=1e-5)
  assert float(s['spread']) ** 2 + float(s['pattern_spread']) ** 2 == (
      pytest.approx(total, rel=1e-5))
  assert float(s['specific_fraction']) == pytest.approx(across / total,
                                                        rel=1e-5)
  assert float(s['mean']) == pytest.approx(m.mean(), rel=1e-6)
  # Two masks that swap halves: the mean mask is flat, all is specific.
  a = np.concatenate([np.ones(4), np.zeros(4)])
  flat = metrics.input_specificity(np.stack([a, 1 - a]))
  assert float(flat['specific_fraction']) == pytest.approx(1.0)
  const = metrics.input_specificity(np.full((3, 4), 0.2))
  assert float(const['specific_fraction']) == 0.0


# ----------------------------------------------------------------------------
# Figure, config, docs.


def test_fig4_class_columns_writes_a_png(tmp_path):
  rs = np.random.RandomState(0)
  images = rs.rand(2, 3, 32, 32, 3)
  importance = rs.rand(2, 3, 32, 32, 1)
  path = tmp_path / 'fig4.png'
  figures.class_columns(images, importance, ('horse', 'airplane', 'truck'),
                        str(path), title='t', row_labels=[['a'] * 3] * 2)
  assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  import matplotlib.image as mpimg  # pylint: disable=g-import-not-at-top
  h, w = mpimg.imread(str(path)).shape[:2]
  assert w > h  # 3 frames of two panels side by side, 2 rows
  with pytest.raises(ValueError, match='one class name per column'):
    figures.class_columns(images, importance, ('horse',), str(path))


def test_config_variants():
  default = load_config('cifar10')
  assert default.experiment == 'cifar10'
  assert default.lan.beta == 7.0 and 5.0 in default.lan.compare_betas
  assert tuple(map(tuple, default.f.convs)) == cifar.PAPER_CONVS
  assert tuple(default.f.dense) == cifar.PAPER_DENSE
  assert tuple(default.lan.hidden) == (500, 500, 500)
  assert default.lan.compare_betas == (5.0,)
  assert tuple(default.lan.mask_shape) == (32, 32, 1)
  assert tuple(default.eval.figure_classes) == c10.FIG4_CLASSES
  paper = load_config('cifar10', 'paper')
  assert paper.f.num_steps == paper.lan.num_steps == 250_000
  assert paper.f.learning_rate == 1e-4
  assert paper.lan.learning_rate == 5e-4 and paper.lan.batch_size == 128
  # Every config extends the base config (the documented overrides exist).
  for c in (default, paper, load_config('cifar10', 'quick')):
    assert 'fidelity_budget' in c.lan and 'init_from' in c.f
    assert set(c.eval.methods) <= set(default.eval.methods)
  quick = load_config('cifar10', 'quick')
  assert quick.f.num_steps < 100 and quick.lan.num_steps < 100
  with pytest.raises(ValueError, match='expected paper, quick'):
    load_config('cifar10', 'nope')


@pytest.mark.parametrize('obj', [cifar.local_response_norm,
                                 cifar.CifarConvNet,
                                 metrics.class_similarity])
def test_docstring_examples_run(obj):
  import sys  # pylint: disable=g-import-not-at-top
  finder = doctest.DocTestFinder(recurse=False)
  runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
  tests = finder.find(obj, globs=dict(vars(sys.modules[obj.__module__])))
  assert tests and tests[0].examples
  for t in tests:
    runner.run(t)
  assert runner.failures == 0


# ----------------------------------------------------------------------------
# The experiment (lanjax.experiments.cifar10).


def test_experiment_is_registered_with_synthetic_data():
  exp = get_experiment('cifar10')
  assert exp is experiment.EXPERIMENT
  config = load_config('cifar10', 'quick')
  data = exp.synthetic_data(config, num_train=40, num_test=20)
  assert data['train']['image'].shape == (40, 32, 32, 3)
  assert data['train']['image'].dtype == np.uint8
  assert data['test']['label'].max() < 10
  task, = exp.tasks(config, data)
  assert task.name == ''
  batch = task.f_batch(task.train_data, jax.random.key(0))
  assert batch['x'].shape == (config.f.batch_size, 32, 32, 3)
  assert 0.0 <= float(batch['x'].min()) and float(batch['x'].max()) <= 1.0
  mask = task.make_lan()(batch['x'])
  assert mask.shape == (config.f.batch_size, 32, 32, 1)
  # F explained in inference mode, trained with dropout.
  f = task.make_f()
  x = batch['x'][:4]
  np.testing.assert_array_equal(f(x), f(x))
  assert not np.allclose(task.f_forward(f, x, jax.random.key(0)),
                         task.f_forward(f, x, jax.random.key(1)))


def test_make_lan_refuses_a_mask_that_does_not_fit_the_images():
  config = load_config('cifar10', 'quick')
  config.lan.mask_shape = (16, 16, 1)
  with pytest.raises(ValueError, match='mask_shape'):
    experiment.make_lan(config)


def test_augmentation_follows_the_config():
  config = load_config('cifar10', 'quick')
  assert experiment.augment_range(config) == c10.AffineRange(10.0, 0.1, 3.0)
  config.data.augment.enabled = False
  assert experiment.augment_range(config) is None


def _pairwise_gap_per_example(masks, labels):
  z = np.asarray(masks, np.float64).reshape(len(masks), -1)
  z = z - z.mean(0)
  z = z / np.linalg.norm(z, axis=1, keepdims=True)
  sim = z @ z.T
  out = []
  for i in range(len(z)):
    same = labels == labels[i]
    same[i] = False
    out.append(sim[i, same].mean() - sim[i, labels != labels[i]].mean())
  return np.array(out)


def test_class_gap_per_example_equals_the_pairwise_means():
  rs = np.random.RandomState(0)
  labels = rs.randint(0, 3, 31)
  masks = rs.rand(31, 4, 4, 1) + 0.8 * (labels[:, None, None, None] == 1)
  got = experiment.class_gap_per_example(masks, labels, num_classes=3)
  np.testing.assert_allclose(got, _pairwise_gap_per_example(masks, labels),
                             atol=1e-5)
  assert float(got[labels == 1].mean()) > 0.2  # class 1 shares a pattern


def test_class_gap_ignores_float_rounding_of_one_collapsed_mask():
  """A collapsed A (one saturated pattern for every input) differs across
  inputs only by rounding-size amounts that still follow the class: no
  shared class features."""
  rs = np.random.RandomState(0)
  labels = np.repeat(np.arange(3), 10)
  pattern = (rs.rand(1, 64) > 0.5).astype(np.float32)
  by_class = (labels[:, None] == np.arange(64) % 3).astype(np.float32)
  masks = pattern + 1e-6 * by_class + 1e-7 * rs.rand(30, 64)
  gap = experiment.class_gap_per_example(masks, labels, num_classes=3)
  np.testing.assert_array_equal(gap, 0.0)
  # Real differences of the same direction do count.
  real = experiment.class_gap_per_example(pattern + 0.1 * by_class, labels,
                                          num_classes=3)
  assert float(real.mean()) > 0.3


def test_same_class_partners_are_other_examples_of_the_class():
  labels = np.array([0, 1, 0, 2, 1, 0, 1])
  p = experiment.same_class_partners(labels, seed=3)
  np.testing.assert_array_equal(labels[p], labels)
  assert p[3] == 3  # alone in its class
  others = np.flatnonzero(labels != 2)
  assert (p[others] != others).all()
  assert sorted(p) == list(range(len(labels)))  # a permutation


def _bright_pixel_images(n=24, seed=0):
  rs = np.random.RandomState(seed)
  pos = rs.randint(0, 32, (n, 2))
  x = np.full((n, 32, 32, 3), 0.1, np.float32)
  x[np.arange(n), pos[:, 0], pos[:, 1]] = 1.0
  return jnp.asarray(x), pos


def _max_reader(x):
  """A black box whose class-0 evidence is the brightest pixel."""
  v = x.max((1, 2, 3))
  return jnp.stack([8 * v, 8 * (1 - v)], -1)


def test_own_mask_beats_a_swapped_mask_only_when_masks_are_specific():
  x, pos = _bright_pixel_images()
  masks = np.ones((len(x), 32, 32, 1), np.float32)
  masks[np.arange(len(x)), pos[:, 0], pos[:, 1]] = 0.0  # keep own pixel
  partner = experiment.same_class_partners(np.zeros(len(x), int))
  zero = lanjax.ConstantNoise(0.0)
  d = experiment.own_vs_swapped_mask(_max_reader, x, jnp.asarray(masks),
                                     partner, zero, jax.random.key(0),
                                     num_samples=2, size=10)
  assert d.shape == (len(x),)
  assert float(d.min()) > 0.5
  same = jnp.broadcast_to(jnp.asarray(masks[:1]), masks.shape)
  d_same = experiment.own_vs_swapped_mask(_max_reader, x, same, partner, zero,
                                          jax.random.key(0), num_samples=2)
  np.testing.assert_allclose(d_same, 0.0, atol=1e-6)


def test_deletion_gain_over_random_rewards_the_right_pixels():
  x, pos = _bright_pixel_images(16)
  right = np.zeros((len(x), 32, 32, 1), np.float32)
  right[np.arange(len(x)), pos[:, 0], pos[:, 1]] = 1.0
  mean_removal = metrics.removal_by_mean()
  gain = experiment.deletion_gain_over_random(
      _max_reader, x, jnp.asarray(right), jax.random.key(0), mean_removal, 8)
  assert gain.shape == (len(x),) and float(gain.mean()) > 0.3
  wrong = 1.0 - right  # the bright pixel last
  loss = experiment.deletion_gain_over_random(
      _max_reader, x, jnp.asarray(wrong), jax.random.key(0), mean_removal, 8)
  assert float(loss.mean()) < 0.0


def _tiny(config, tmp_path):
  """The quick config shrunk further for a test: two methods, one removal."""
  config.data.data_dir = str(tmp_path / 'no_data_here')
  config.data.offline_data_dir = ''
  config.data.train_limit = config.data.test_limit = 200
  config.eval.num_examples = 200
  config.eval.methods = ('lan', 'gradient', 'random')
  config.eval.removals = ('blur',)
  config.eval.curve_steps = 2
  config.eval.sanity_lan_steps = 2
  config.lan.compare_betas = (5.0,)
  return config


@pytest.mark.slow
def test_quick_experiment_end_to_end_on_mock_data(tmp_path):
  config = _tiny(load_config('cifar10', 'quick'), tmp_path)
  with tfds.testing.mock_data(num_examples=200):
    skeleton.train(experiment.EXPERIMENT, config, str(tmp_path))
    m = skeleton.evaluate(experiment.EXPERIMENT, config, str(tmp_path))
  for name in ('fig4.png', 'fig4_beta5.png', 'mean_importance.png',
               'comparison.md', 'perturbation_curves.png', 'metrics.json',
               'f_learning_curve.png'):
    assert (tmp_path / name).stat().st_size > 0, name
  assert (tmp_path / 'beta_5' / 'checkpoints' / 'lan').is_dir()
  assert json.loads((tmp_path / 'beta_5' / 'lan_explains.json').read_text())[
      'beta'] == 5.0
  assert json.loads((tmp_path / 'metrics.json').read_text()) == json.loads(
      json.dumps(m))
  assert m['f_step'] == config.f.num_steps
  assert m['lan_step'] == config.lan.num_steps
  assert m['data_note'] == c10.DATA_NOTE_OFFICIAL
  # evaluate reads the F that training ended with: its accuracy equals the
  # last point of F's learning curve (the same 200 test images, measured
  # during training by another program).
  curve = training.read_metric(str(tmp_path / 'metrics_f.jsonl'),
                               'test_accuracy')
  assert curve[-1][0] == config.f.num_steps
  assert m['f_test_accuracy'] == pytest.approx(curve[-1][1], abs=1e-6)
  assert set(m['betas']) == {'7', '5'}
  assert set(m['comparison']['methods']) == set(config.eval.methods)
  assert set(m['betas']['5']['comparison']['methods']) == {'lan', 'random'}
  # The beta = 5 table refits no A on the randomised F: LAN's sanity check
  # is reported as not run, not as a failure (correlation 1 by construction).
  lan5 = m['betas']['5']['comparison']['methods']['lan']
  assert lan5['sanity_pass'] is None and 'not run' in lan5['sanity_note']
  assert not any(k.startswith('sanity_rank_corr/') for k in lan5)
  assert '| lan |' in (tmp_path / 'beta_5' / 'comparison.md').read_text()
  assert 'FAIL' not in [r for r in (tmp_path / 'beta_5' / 'comparison.md'
                                    ).read_text().splitlines()
                        if r.startswith('| lan |')][0]
  for b in m['betas'].values():
    s = b['class_similarity']
    # Random mock labels: the class-similarity gap is one more draw of its
    # null (the gaps under permuted labels), not above it. (Input
    # specificity: the claim masks_are_input_specific, false below.)
    assert abs(s['gap'] - s['permuted_labels_gap_mean']) <= (
        4 * s['permuted_labels_gap_std']) and 'untrained_a_gap' in s
  # An untrained F and A on random images with random labels: every claim
  # is false, with its interval and threshold recorded.
  assert set(m['claims']) == {
      'f_is_far_above_chance', 'masks_of_a_class_share_features',
      'masks_are_input_specific', 'lan_beats_random_on_deletion_under_blur'}
  assert not any(m['claims'].values())
  for c in m['claims_detail'].values():
    assert c['ci95'][0] <= c['effect'] <= c['ci95'][1]


@pytest.mark.slow
def test_train_cli_on_real_cifar10(tmp_path):
  shared = _shared_dir()
  lossless = shared / 'data' / 'cifar10' / 'lossless_subset.npz'
  env = subprocess_env(TFDS_DATA_DIR=str(shared / 'tensorflow_datasets'))
  r = subprocess.run(
      [sys.executable, str(ROOT / 'train.py'), '--config',
       str(ROOT / 'configs' / 'cifar10.py:quick'), '--workdir', str(tmp_path),
       '--config.data.test_limit=1000', '--config.eval.num_examples=1000',
       f'--config.data.lossless_subset={lossless}',
       # The comparison and the beta = 5 refit run in the mock test above.
       '--config.eval.compare_examples=0', '--config.lan.compare_betas=()',
       '--config.f.eval_examples=1000'],
      env=env, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  m = json.loads((tmp_path / 'metrics.json').read_text())
  assert m['data_note'] == c10.DATA_NOTE_OFFLINE_JPEG  # said next to numbers
  assert m['num_test_examples'] == 1000
  # The F train.py saved is the one evaluated: the same accuracy as the last
  # point of its learning curve (the same 1,000 images, measured in training).
  curve = training.read_metric(str(tmp_path / 'metrics_f.jsonl'),
                               'test_accuracy')
  assert m['f_test_accuracy'] == pytest.approx(curve[-1][1], abs=1e-6)
  # test_limit keeps the first 1,000 *stored* examples, which are not test
  # indices 0-999; the JPEG-vs-original numbers need those (the full test
  # split has them; jpeg_effect has its own real-data test above).
  if lossless.exists() and 'jpeg_vs_original' in m:
    j = m['jpeg_vs_original']
    assert j['num_examples'] == 1000 and 28 < j['psnr_median_db'] < 33
  assert (tmp_path / 'fig4.png').stat().st_size > 0
  assert 'claim masks_are_input_specific' in r.stdout
