"""SDC (Pandey et al.): generator, FCAM / mosaic CNN, ground-truth metrics."""

import functools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lanjax import metrics as metrics_lib
from lanjax import sdc_metrics as sm
from lanjax.data import sdc
from lanjax.models import FCAM, MosaicCNN, sparsemax
from conftest import load_config

# ----------------------------------------------------------------------------
# Synthetic generator.


def test_synthetic_is_deterministic_from_the_seed():
  a = sdc.make_synthetic('separable', num_train=50, num_test=30, seed=3)
  b = sdc.make_synthetic('separable', num_train=50, num_test=30, seed=3)
  c = sdc.make_synthetic('separable', num_train=50, num_test=30, seed=4)
  for split in ('train', 'test'):
    for k in ('x', 'y', 'fg'):
      np.testing.assert_array_equal(a[split][k], b[split][k])
  assert not np.array_equal(a['train']['x'], c['train']['x'])
  assert not np.array_equal(a['train']['x'], a['test']['x'][:50])
  assert a['train']['x'].shape == (50, 9, 2)
  assert a['train']['x'].dtype == np.float32


def test_synthetic_segments_come_from_their_distributions():
  # Tiny spreads: every segment sits on its distribution's mean.
  means = np.array([[0., 0.], [5., 0.], [0., 5.], [-5., -5.]], np.float32)
  s = jax.jit(functools.partial(sdc.sample_synthetic, num=500, means=means,
                                stds=np.full((4, 2), 1e-3, np.float32)))(
                                    jax.random.key(0))
  x, y, fg = map(np.asarray, (s['x'], s['y'], s['fg']))
  n = np.arange(len(y))
  np.testing.assert_allclose(x[n, fg], means[y + 1], atol=1e-2)
  bg = np.ones(x.shape[:2], bool)
  bg[n, fg] = False
  np.testing.assert_allclose(x[bg], 0.0, atol=1e-2)


def test_synthetic_label_depends_only_on_the_foreground():
  """Other background draws or distributions never change y, i* or x_{i*}."""
  spec = sdc.synthetic_spec('no_linear_focus')
  key = jax.random.key(7)
  a = sdc.sample_synthetic(key, 400, **spec)
  moved = dict(spec, means=spec['means'].copy(), stds=spec['stds'].copy())
  moved['means'][0] = (10.0, -10.0)  # another background distribution
  moved['stds'][0] = 3.0
  b = sdc.sample_synthetic(key, 400, **moved)
  np.testing.assert_array_equal(a['y'], b['y'])
  np.testing.assert_array_equal(a['fg'], b['fg'])
  n = np.arange(400)
  fg = np.asarray(a['fg'])
  np.testing.assert_array_equal(np.asarray(a['x'])[n, fg],
                                np.asarray(b['x'])[n, fg])
  assert not np.allclose(np.asarray(a['x']), np.asarray(b['x']))


def test_foreground_index_and_label_are_uniform():
  s = sdc.sample_synthetic(jax.random.key(1), 18_000,
                           **sdc.synthetic_spec('separable'))
  fg_counts = np.bincount(np.asarray(s['fg']), minlength=9)
  y_counts = np.bincount(np.asarray(s['y']), minlength=3)
  assert fg_counts.size == 9 and y_counts.size == 3
  # Chi-square statistics well under the 0.999 quantiles (26.1 for 8
  # degrees of freedom, 13.8 for 2).
  chi = lambda c: ((c - c.mean()) ** 2 / c.mean()).sum()
  assert chi(fg_counts) < 26.1 and chi(y_counts) < 13.8
  # ... and the two are independent: every (i*, y) pair occurs.
  pairs = np.bincount(np.asarray(s['fg']) * 3 + np.asarray(s['y']),
                      minlength=27)
  assert pairs.min() > 0.7 * 18_000 / 27


def test_bad_synthetic_specs_are_refused():
  with pytest.raises(ValueError, match='Unknown synthetic'):
    sdc.synthetic_spec('nope')
  with pytest.raises(ValueError, match=r'\(k \+ 1, d\)'):
    sdc.make_synthetic(means=[0.0, 1.0])
  with pytest.raises(ValueError, match='stds'):
    sdc.make_synthetic(means=np.zeros((4, 2)), stds=np.ones((3, 3)))
  with pytest.raises(ValueError, match='positive'):
    sdc.make_synthetic(means=np.zeros((4, 2)), stds=0.0)
  with pytest.raises(ValueError, match='num_train'):
    sdc.make_synthetic('separable', num_train=0)


def _linear_focus_ft(x, fg, w):
  return float(sm.focus_true(jnp.asarray(x @ w), jnp.asarray(fg)).mean())


def test_no_linear_focus_config_defeats_every_linear_focus_net():
  """Second error mode: no linear f reaches a high FT; a nonlinear f does."""
  d = sdc.make_synthetic('no_linear_focus', num_train=10, num_test=3000)
  x, fg = d['test']['x'], d['test']['fg']
  angles = np.linspace(0, 2 * np.pi, 180, endpoint=False)
  best = max(_linear_focus_ft(x, fg, np.array([np.cos(a), np.sin(a)]))
             for a in angles)
  assert best < 0.75  # about 2/3: one class is always on the wrong side
  radial = np.linalg.norm(x, axis=-1)  # f(x) = |x|: not linear
  assert float(sm.focus_true(radial, fg).mean()) > 0.97
  # The separable configuration is solved by a linear focus, f = x_2.
  s = sdc.make_synthetic('separable', num_train=10, num_test=3000)
  assert _linear_focus_ft(s['test']['x'], s['test']['fg'],
                          np.array([0.0, 1.0])) > 0.97


def test_uniform_attention_suffices_config_is_accurate_without_focus():
  """Third error mode: alpha = 1/m (FT = 1/m) already classifies well."""
  d = sdc.make_synthetic('uniform_attention_suffices', num_train=2000,
                         num_test=2000)
  attended = {s: d[s]['x'].mean(1) for s in ('train', 'test')}
  centres = np.stack([attended['train'][d['train']['y'] == c].mean(0)
                      for c in range(3)])
  dist = ((attended['test'][:, None] - centres[None]) ** 2).sum(-1)
  accuracy = (dist.argmin(-1) == d['test']['y']).mean()
  assert accuracy > 0.97
  uniform = jnp.full((2000, 9), 1 / 9)
  ft = sm.focus_true(uniform, d['test']['fg'], ties='random')
  np.testing.assert_allclose(float(ft.mean()), 1 / 9, rtol=1e-5)


# ----------------------------------------------------------------------------
# Image mosaics.


def _pool(n=300, size=4, channels=1, seed=0):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 10, n).astype(np.int32)
  images = rng.integers(0, 256, (n, size, size, channels)).astype(np.uint8)
  return images, labels


def test_mosaic_labels_depend_only_on_the_foreground_image():
  _, labels = _pool()
  fg_classes = (3, 7, 1)
  m = sdc.make_mosaic_indices(labels, fg_classes=fg_classes, num=2000,
                              seed=0)
  idx, y, fg = m['idx'], m['y'], m['fg']
  n = np.arange(len(y))
  seg_labels = labels[idx]  # (N, 9)
  np.testing.assert_array_equal(np.asarray(fg_classes)[y], seg_labels[n, fg])
  bg = np.ones(idx.shape, bool)
  bg[n, fg] = False
  assert not np.isin(seg_labels[bg], fg_classes).any()
  # Hence the one segment of a foreground class is i*, and its class gives
  # y, whatever the backgrounds are or in which order they come:
  rng = np.random.default_rng(1)
  for _ in range(3):
    perm = rng.permutation(9)
    moved = seg_labels[:, perm]
    pos = np.argmax(np.isin(moved, fg_classes), axis=1)
    np.testing.assert_array_equal(np.argsort(perm)[fg], pos)
    found = np.searchsorted(np.sort(fg_classes), moved[n, pos])
    np.testing.assert_array_equal(np.argsort(fg_classes)[found], y)
  # Uniform i* and y; deterministic from the seed.
  assert np.bincount(fg, minlength=9).min() > 0.75 * 2000 / 9
  assert np.bincount(y, minlength=3).min() > 0.85 * 2000 / 3
  again = sdc.make_mosaic_indices(labels, fg_classes=fg_classes, num=2000,
                                  seed=0)
  np.testing.assert_array_equal(again['idx'], idx)
  other = sdc.make_mosaic_indices(labels, fg_classes=fg_classes, num=2000,
                                  seed=1)
  assert not np.array_equal(other['idx'], idx)


def test_mosaic_indices_refuse_bad_classes():
  _, labels = _pool()
  with pytest.raises(ValueError, match='share'):
    sdc.make_mosaic_indices(labels, fg_classes=(0, 1), bg_classes=(1, 5),
                            num=3)
  with pytest.raises(ValueError, match='foreground classes \\[42\\]'):
    sdc.make_mosaic_indices(labels, fg_classes=(0, 42), num=3)
  with pytest.raises(ValueError, match='distinct'):
    sdc.make_mosaic_indices(labels, fg_classes=(0, 0), num=3)
  with pytest.raises(ValueError, match='not a square'):
    sdc.grid_size(8)


def test_mosaic_layout_is_row_major_and_scaled():
  images = (np.arange(9, dtype=np.uint8)[:, None, None, None] * 10
            + np.zeros((9, 2, 2, 1), np.uint8))
  x = sdc.mosaic(images, np.arange(9)[None])  # segment i = image i
  assert x.shape == (1, 6, 6, 1) and x.dtype == jnp.float32
  for i in range(9):
    r, c = divmod(i, 3)
    np.testing.assert_allclose(x[0, 2 * r:2 * r + 2, 2 * c:2 * c + 2, 0],
                               i * 10 / 255.0)
  segs = sdc.segments_from_mosaic(x, 3)
  np.testing.assert_allclose(segs[0], images / 255.0)
  np.testing.assert_allclose(sdc.mosaic_from_segments(segs), x)
  with pytest.raises(ValueError, match='3x3'):
    sdc.segments_from_mosaic(jnp.zeros((1, 7, 6, 1)), 3)


def test_sample_batch_is_jit_safe_and_matches_the_split():
  images, labels = _pool(channels=3)
  data = {'images': images, 'labels': labels,
          **sdc.make_mosaic_indices(labels, fg_classes=(0, 1, 2), num=50)}
  data = jax.tree.map(jnp.asarray, data)
  batch = jax.jit(functools.partial(sdc.sample_batch, batch_size=16))(
      data, jax.random.key(0))
  assert batch['x'].shape == (16, 12, 12, 3)
  assert float(batch['x'].min()) >= 0 and float(batch['x'].max()) <= 1
  # Each batch row is one of the split's mosaics with its own y and fg.
  full = sdc.instances(data)
  flat = np.asarray(full['x']).reshape(50, -1)
  for b in range(16):
    row = np.flatnonzero(
        (flat == np.asarray(batch['x'][b]).reshape(-1)).all(-1))
    assert row.size >= 1
    assert int(full['y'][row[0]]) == int(batch['y'][b])
    assert int(full['fg'][row[0]]) == int(batch['fg'][b])
  # Synthetic splits are indexed directly.
  syn = sdc.make_synthetic('separable', num_train=20, num_test=5)['train']
  sb = sdc.sample_batch(syn, jax.random.key(1), 8)
  assert sb['x'].shape == (8, 9, 2)


def test_load_image_sdc_on_mock_tfds(tmp_path):
  tfds = pytest.importorskip('tensorflow_datasets')
  with tfds.testing.mock_data(num_examples=120):
    d = sdc.load_image_sdc('mnist', num_train=40, num_test=20,
                           data_dir=str(tmp_path), seed=0)
  tr = d['train']
  assert tr['images'].dtype == np.uint8 and tr['images'].shape[1:] == (
      28, 28, 1)
  assert tr['idx'].shape == (40, 9) and d['test']['idx'].shape == (20, 9)
  n = np.arange(40)
  np.testing.assert_array_equal(tr['labels'][tr['idx'][n, tr['fg']]],
                                tr['y'])  # fg classes (0, 1, 2) = y
  x = sdc.instances(tr, 0, 4)['x']
  assert x.shape == (4, 84, 84, 1)


def test_load_image_sdc_on_real_mnist(shared_tfds_dir):
  d = sdc.load_image_sdc('mnist', num_train=300, num_test=100,
                         data_dir=shared_tfds_dir, train_limit=2000,
                         test_limit=1000)
  te = d['test']
  n = np.arange(100)
  np.testing.assert_array_equal(te['labels'][te['idx'][n, te['fg']]], te['y'])
  x = np.asarray(sdc.instances(te, 0, 10)['x'])
  assert x.shape == (10, 84, 84, 1) and 0 <= x.min() and x.max() <= 1
  assert x.max() > 0.9  # real digits reach full intensity


# ----------------------------------------------------------------------------
# Metrics against hand-made cases.


def test_segment_scores_of_mosaic_and_flat_maps():
  blocks = jnp.arange(9.0).reshape(1, 9, 1, 1, 1) * jnp.ones((1, 9, 2, 2, 1))
  mosaic_map = sdc.mosaic_from_segments(blocks)  # segment i is constant i
  np.testing.assert_allclose(sm.segment_scores(mosaic_map, grid=3)[0],
                             np.arange(9.0))
  np.testing.assert_allclose(sm.segment_scores(mosaic_map[..., 0], grid=3),
                             sm.segment_scores(mosaic_map, grid=3))
  # One pixel of 4 set in segment 5: mean 0.25 there.
  one = jnp.zeros((1, 6, 6)).at[0, 2, 5].set(1.0)
  np.testing.assert_allclose(sm.segment_scores(one, grid=3)[0],
                             np.eye(9)[5] * 0.25)
  flat = jnp.asarray([[[1.0, 3.0], [0.0, 0.0], [4.0, 0.0]]])
  np.testing.assert_allclose(sm.segment_scores(flat)[0], [2.0, 0.0, 2.0])


def test_focus_true_ties_and_tolerance():
  seg = jnp.asarray([[0.1, 0.9, 0.2],   # fg 1 on top
                     [0.5, 0.5, 0.1],   # fg 0 tied with 1
                     [1.0, 1.0, 1.0],   # all tied
                     [0.9, 0.1, 0.2],   # fg 2 not on top
                     [0.3, 0.3 + 1e-7, 0.0]])  # within rtol: a tie
  fg = jnp.asarray([1, 0, 2, 2, 1])
  np.testing.assert_allclose(sm.focus_true(seg, fg), [1, 0, 0, 0, 0])
  np.testing.assert_allclose(sm.focus_true(seg, fg, ties='random'),
                             [1, 0.5, 1 / 3, 0, 0.5], rtol=1e-6)
  np.testing.assert_allclose(
      jax.jit(functools.partial(sm.focus_true, ties='random', rtol=0.0))(
          seg, fg), [1, 0.5, 1 / 3, 0, 1])
  with pytest.raises(ValueError, match='ties'):
    sm.focus_true(seg, fg, ties='first')


def test_foreground_mass_equals_pixel_mass_in_the_region():
  score = jax.random.uniform(jax.random.key(0), (5, 12, 12, 1))
  fg = jnp.asarray([0, 4, 8, 2, 6])
  seg = sm.segment_scores(score, grid=3)
  region = sm.foreground_region(fg, (12, 12, 1), grid=3)
  np.testing.assert_allclose(sm.foreground_mass(seg, fg),
                             metrics_lib.mass_in_region(score, region),
                             rtol=1e-5)
  assert region.sum() == 5 * 16 and bool(region[1, 4:8, 4:8].all())
  np.testing.assert_allclose(
      sm.foreground_mass(jnp.asarray([[1.0, 3.0, 0.0], [0.0, 0.0, 0.0]]),
                         jnp.asarray([1, 2])), [0.75, 1 / 3])
  flat = sm.foreground_region(jnp.asarray([2]), (4, 3))
  np.testing.assert_array_equal(flat[0], np.eye(4, dtype=bool)[2][:, None]
                                .repeat(3, 1))


def test_segment_pointing_game_looks_at_the_single_top_pixel():
  score = jnp.zeros((2, 6, 6)).at[0, 4, 1].set(1.0).at[1, 0, 0].set(1.0)
  # Sample 0's top pixel lies in segment 6 (row 2, col 0); sample 1's in 0.
  np.testing.assert_allclose(
      sm.segment_pointing_game(score, jnp.asarray([6, 4]), grid=3), [1, 0])
  flat = jnp.asarray([[[0.0, 2.0], [1.0, 1.0]]])
  np.testing.assert_allclose(sm.segment_pointing_game(flat, jnp.asarray([0])),
                             [1.0])


def test_attention_sparsity_matches_table_2_definitions():
  alpha = jnp.asarray([np.eye(9)[3], np.full(9, 1 / 9),
                       [0.5, 0.5] + [0.0] * 7,
                       [0.98, 0.01, 0.01] + [0.0] * 6])
  out = jax.jit(sm.attention_sparsity)(alpha)
  np.testing.assert_allclose(out['nnz'], [1, 9, 2, 1])  # 0.01 is not > 0.01
  np.testing.assert_allclose(
      out['dist'], [0, math.sqrt(8 / 9), math.sqrt(0.5),
                    math.sqrt(0.02 ** 2 + 2 * 0.01 ** 2)], atol=1e-6)
  np.testing.assert_allclose(
      out['ent'], [0, math.log(9), math.log(2),
                   -(0.98 * math.log(0.98) + 0.02 * math.log(0.01))],
      rtol=1e-5, atol=1e-7)
  g = jax.grad(lambda a: sm.entropy(a).sum())(alpha[:3])
  assert bool(jnp.all(jnp.isfinite(g)))


def test_foreground_alpha_curve_and_breakdown():
  alpha = jnp.asarray([[0.7, 0.2, 0.1], [0.2, 0.3, 0.5], [0.4, 0.4, 0.2]])
  fg = jnp.asarray([0, 1, 1])
  np.testing.assert_allclose(
      sm.foreground_alpha_above(alpha, fg, jnp.asarray([0.0, 0.35, 0.6])),
      [1.0, 2 / 3, 1 / 3])
  logits = jnp.asarray([[2.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
  y = jnp.asarray([0, 0, 1])
  out = sm.focus_predict_breakdown(alpha, fg, logits, y)
  np.testing.assert_allclose(out['ftpt'], [1, 0, 0])
  np.testing.assert_allclose(out['ffpf'], [0, 1, 0])
  np.testing.assert_allclose(out['ffpt'], [0, 0, 1])  # tie is not focus-true
  total = sum(out.values())
  np.testing.assert_allclose(total, 1.0)


def test_segment_deletion_curve_on_a_known_black_box():
  # F reads segment 4 only: logit of class 0 = 10 * mean(segment 4).
  def f(x):
    seg4 = sdc.segments_from_mosaic(x, 3)[:, 4].mean((1, 2, 3))
    return jnp.stack([10 * seg4, jnp.zeros_like(seg4)], -1)

  x = jnp.ones((2, 6, 6, 1))
  good = jnp.asarray([np.eye(9)[4], np.eye(9)[4]])
  bad = 1.0 - good  # segment 4 last
  curve, auc = sm.segment_deletion_curve(f, x, good, grid=3)
  p = jax.nn.sigmoid(10.0)
  assert curve.shape == (10, 2)
  np.testing.assert_allclose(curve[0], p, rtol=1e-6)
  np.testing.assert_allclose(curve[1:], 0.5, rtol=1e-6)
  _, auc_bad = sm.segment_deletion_curve(f, x, bad, grid=3)
  np.testing.assert_allclose(auc, (p + 0.5) / 2 / 9 + 0.5 * 8 / 9, rtol=1e-6)
  np.testing.assert_allclose(auc_bad, (8 * p + (p + 0.5) / 2) / 9, rtol=1e-6)
  # Flat layout: F reads segment 2 of (B, 4, 2).
  g = lambda x: jnp.stack([10 * x[:, 2].sum(-1), jnp.zeros(x.shape[0])], -1)
  c, _ = sm.segment_deletion_curve(g, jnp.ones((1, 4, 2)),
                                   jnp.asarray([[0.0, 0.5, 0.9, 0.1]]))
  np.testing.assert_allclose(c[1:, 0], 0.5, rtol=1e-6)


# ----------------------------------------------------------------------------
# Networks.


def test_sparsemax_is_the_simplex_projection():
  np.testing.assert_allclose(sparsemax(jnp.asarray([1.0, 0.5, -1.0])),
                             [0.75, 0.25, 0.0])
  z = jax.random.normal(jax.random.key(0), (50, 9)) * 2
  p = sparsemax(z)
  np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)
  assert float(p.min()) >= 0 and bool((p == 0).any())
  # The projection: p = max(z - tau, 0) with the tau found by bisection.
  lo, hi = z.min(-1) - 1, z.max(-1)
  for _ in range(60):
    mid = (lo + hi) / 2
    big = jnp.maximum(z - mid[:, None], 0).sum(-1) > 1
    lo, hi = jnp.where(big, mid, lo), jnp.where(big, hi, mid)
  np.testing.assert_allclose(p, jnp.maximum(z - lo[:, None], 0), atol=1e-5)
  np.testing.assert_allclose(sparsemax(z.T, axis=0), p.T, atol=1e-6)
  g = jax.grad(lambda z: (sparsemax(z) * jnp.arange(9.0)).sum())(z[0])
  assert bool(jnp.all(jnp.isfinite(g)))


@pytest.mark.parametrize('attention,average_at', [('softmax', 'input'),
                                                  ('sparsemax', 'features')])
def test_fcam_on_flat_segments(attention, average_at):
  f = FCAM((2,), focus_hidden=(16,), classifier_hidden=(16,),
           attention=attention, average_at=average_at, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (6, 9, 2)) * 3
  out = f.attend(x)
  assert out['logits'].shape == (6, 3) and out['alpha'].shape == (6, 9)
  np.testing.assert_allclose(out['alpha'].sum(-1), 1.0, rtol=1e-5)
  assert float(out['alpha'].min()) >= 0
  # Permutation invariant: permuting segments permutes alpha only.
  perm = np.random.default_rng(0).permutation(9)
  moved = f.attend(x[:, perm])
  np.testing.assert_allclose(moved['alpha'], out['alpha'][:, perm],
                             rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(moved['logits'], out['logits'], rtol=1e-4,
                             atol=1e-5)
  with pytest.raises(ValueError, match=r'\(9, 2\)'):
    f(jnp.zeros((2, 8, 2)))


def test_fcam_classifies_the_alpha_weighted_average():
  f = FCAM((2,), focus_hidden=(8,), classifier_hidden=(8,),
           rngs=nnx.Rngs(1))
  x = jax.random.normal(jax.random.key(1), (4, 9, 2)) * 3
  out = f.attend(x)
  attended = (out['alpha'][..., None] * x).sum(1)
  np.testing.assert_allclose(out['logits'], f.classifier(attended)[1],
                             rtol=1e-5, atol=1e-6)
  # The focus scores are the focus net's per-segment outputs.
  np.testing.assert_allclose(out['scores'],
                             f.focus(x.reshape(36, 2))[1].reshape(4, 9),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out['alpha'], jax.nn.softmax(out['scores']),
                             rtol=1e-5)


def test_fcam_on_mosaic_images():
  f = FCAM((8, 8, 3), conv_features=(4,), focus_hidden=(8,),
           classifier_hidden=(8,), dropout_rate=0.5, rngs=nnx.Rngs(0))
  assert f.input_shape == (24, 24, 3)
  x = jax.random.uniform(jax.random.key(0), (3, 24, 24, 3))
  out = f.attend(x)
  np.testing.assert_allclose(out['alpha'].sum(-1), 1.0, rtol=1e-5)
  # alpha_i scores segment i of the row-major grid.
  segs = sdc.segments_from_mosaic(x, 3)
  np.testing.assert_allclose(
      out['scores'], f.focus(segs.reshape(27, 8, 8, 3))[1].reshape(3, 9),
      rtol=1e-5, atol=1e-6)
  # Permuting the mosaic's blocks permutes alpha.
  perm = np.random.default_rng(1).permutation(9)
  moved = f.attend(sdc.mosaic_from_segments(segs[:, perm]))
  np.testing.assert_allclose(moved['alpha'], out['alpha'][:, perm],
                             rtol=1e-4, atol=1e-6)
  # Dropout only with a key.
  np.testing.assert_allclose(f(x), out['logits'], rtol=1e-6)
  assert not np.allclose(f(x, dropout_key=jax.random.key(0)), out['logits'])
  with pytest.raises(ValueError, match='attention'):
    FCAM((2,), attention='max', rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='not a square'):
    FCAM((8, 8, 3), num_segments=8, rngs=nnx.Rngs(0))


def test_mosaic_cnn_shapes_and_errors():
  f = MosaicCNN((24, 24, 1), features=(4, 8), hidden=(8,), dropout_rate=0.3,
                rngs=nnx.Rngs(0))
  x = jax.random.uniform(jax.random.key(0), (2, 24, 24, 1))
  assert f(x).shape == (2, 3)
  assert not np.allclose(f(x), f(x, dropout_key=jax.random.key(1)))
  with pytest.raises(ValueError, match=r'\(24, 24, 1\)'):
    f(jnp.zeros((2, 12, 12, 1)))


# ----------------------------------------------------------------------------
# Figures and config.


def test_figures_write_pngs(tmp_path):
  from lanjax.experiments import figures  # pylint: disable=g-import-not-at-top
  x = np.random.default_rng(0).uniform(size=(2, 12, 12, 1))
  maps = {'alpha': np.random.default_rng(1).uniform(size=(2, 12, 12)),
          'LAN': np.zeros((2, 12, 12, 1))}
  path = tmp_path / 'mosaics.png'
  figures.sdc_mosaics(x, maps, [4, 0], 3, str(path), title='t',
                      fg_labels=[0, 2])
  assert path.stat().st_size > 1000
  xs = np.linspace(-1, 1, 5)
  path2 = tmp_path / 'landscape.png'
  figures.sdc_focus_landscape(np.zeros((4, 2)), [0, 1, 2, 3], xs, xs,
                              np.zeros((5, 5)), str(path2))
  assert path2.stat().st_size > 1000


@pytest.mark.parametrize('variant', [None, 'synthetic', 'mnist', 'cifar',
                                     'quick', 'fc'])
def test_config_variants(variant):
  config = load_config('sdc', variant)
  assert config.experiment == 'sdc'
  assert config.data.num_segments == 9 and config.data.num_classes == 3
  if variant == 'synthetic':
    assert config.data.name == 'synthetic'
    assert config.data.synthetic in sdc.SYNTHETIC
  if variant == 'cifar':
    assert config.data.name == 'cifar10'
    assert config.lan.mask_shape == (96, 96, 1)
  if variant == 'quick':
    assert config.f.num_steps <= 200
  # The conv A for image mosaics; the FC A for flat segments, 'fc' and the
  # smoke run 'quick' (cheaper to compile).
  a = _experiment().make_lan(config)
  assert a.mask_shape == tuple(config.lan.mask_shape)
  assert type(a).__name__ == (
      'LatentAttentionNetwork' if variant in ('synthetic', 'fc', 'quick')
      else 'ConvLatentAttentionNetwork')


def test_config_refuses_unknown_variant():
  with pytest.raises(ValueError, match='synthetic'):
    load_config('sdc', 'nope')


def test_config_paper_variant_and_base_fields():
  config = load_config('sdc', 'paper')
  assert config.f.num_steps > load_config('sdc').f.num_steps
  assert config.eval.methods[0] == 'lan' and 'random' in config.eval.methods


# ----------------------------------------------------------------------------
# The experiment (lanjax.experiments.sdc).


def _experiment():
  from lanjax.experiments import sdc as sdc_exp  # pylint: disable=g-import-not-at-top
  return sdc_exp


def test_the_experiment_is_registered():
  from lanjax.experiments import get_experiment  # pylint: disable=g-import-not-at-top
  assert get_experiment('sdc') is _experiment().EXPERIMENT


def test_mosaic_noise_draws_training_mosaics():
  images, labels = _pool(n=60, size=4)
  ind = sdc.make_mosaic_indices(labels, fg_classes=(0, 1, 2), num=30, seed=1)
  noise = sdc.MosaicNoise(jnp.asarray(images), jnp.asarray(ind['idx']))
  x = jnp.zeros((5, 12, 12, 1))
  eta = np.asarray(jax.jit(lambda n, x: n.sample(jax.random.key(0), x, 3))(
      noise, x))
  assert eta.shape == (3, 5, 12, 12, 1)
  every = np.asarray(sdc.mosaic(images, ind['idx']))  # (30, 12, 12, 1)
  for k in range(3):
    for b in range(5):  # each draw is one of the training mosaics
      assert np.abs(every - eta[k, b]).reshape(30, -1).max(-1).min() == 0
  assert len({eta[k, b].tobytes() for k in range(3) for b in range(5)}) > 3
  with pytest.raises(ValueError, match='shape'):
    noise.sample(jax.random.key(0), jnp.zeros((2, 8, 8, 1)), 1)


def test_background_indices_hold_only_background_images():
  _, labels = _pool(n=300)
  bg = sdc.background_indices(labels, fg_classes=(0, 1, 2), num=400,
                              seed=3)
  assert bg.shape == (400, 9) and bg.dtype == np.int32
  classes = labels[bg]
  assert not np.isin(classes, (0, 1, 2)).any()
  assert set(np.unique(classes)) == set(range(3, 10))  # every bg class
  np.testing.assert_array_equal(
      bg, sdc.background_indices(labels, fg_classes=(0, 1, 2), num=400,
                                 seed=3))
  only = sdc.background_indices(labels, fg_classes=(0, 1, 2), num=50,
                                bg_classes=(5,))
  assert (labels[only] == 5).all()
  with pytest.raises(ValueError, match='share'):
    sdc.background_indices(labels, fg_classes=(0, 1), num=5,
                           bg_classes=(1, 4))
  # The mosaics of the task are unchanged by the shared pools: same seed,
  # same indices as before (label depends on the foreground only).
  m = sdc.make_mosaic_indices(labels, fg_classes=(0, 1, 2), num=400, seed=3)
  assert (np.isin(labels[m['idx']], (0, 1, 2)).sum(1) == 1).all()


def test_background_noise_of_the_experiment_has_no_foreground():
  """config.lan.noise='background': H draws every segment from D_0."""
  exp = _experiment()
  config = _pool_config()
  config.lan.noise = 'background'
  images, labels = _pool(n=200, size=4)
  images = (np.arange(200, dtype=np.uint8)[:, None, None, None]
            * np.ones((1, 4, 4, 1), np.uint8))  # image i is the constant i
  ind = sdc.make_mosaic_indices(labels, fg_classes=(0, 1, 2), num=100,
                                seed=0)
  data = {'train': {'images': images, 'labels': labels, **ind}}
  h = exp.make_noise(config, data)
  eta = np.asarray(h.sample(jax.random.key(0), jnp.zeros((6, 12, 12, 1)), 4))
  seg = np.asarray(sdc.segments_from_mosaic(jnp.asarray(eta), 3))
  which = np.rint(seg[..., 0, 0, 0] * 255).astype(int)  # (4, 6, 9) images
  assert not np.isin(labels[which], (0, 1, 2)).any()
  assert len(np.unique(which)) > 40
  # Bootstrap noise (the training mosaics) holds one foreground per draw.
  config.lan.noise = 'bootstrap'
  eta = exp.make_noise(config, data).sample(jax.random.key(0),
                                            jnp.zeros((6, 12, 12, 1)), 4)
  seg = np.asarray(sdc.segments_from_mosaic(eta, 3))
  which = np.rint(seg[..., 0, 0, 0] * 255).astype(int)
  np.testing.assert_array_equal(np.isin(labels[which], (0, 1, 2)).sum(-1), 1)
  # Synthetic: Gaussian draws from D_0 (row 0 of the spec).
  config = _pool_config('synthetic')
  config.lan.noise = 'background'
  data = sdc.make_synthetic('separable', num_train=20, num_test=5)
  eta = np.asarray(exp.make_noise(config, data).sample(
      jax.random.key(0), jnp.zeros((100, 9, 2)), 10)).reshape(-1, 2)
  np.testing.assert_allclose(eta.mean(0), data['spec']['means'][0],
                             atol=0.05)
  np.testing.assert_allclose(eta.std(0), data['spec']['stds'][0], rtol=0.05)


def _pool_config(variant='quick'):
  config = load_config('sdc', variant)
  return config


def test_segment_report_scores_hand_made_maps():
  """A map high on the foreground scores FT 1; on another segment, 0."""
  exp = _experiment()
  config = _pool_config()
  g, s = 3, 4
  fg = jnp.array([0, 4, 8, 5])
  x = jnp.zeros((4, g * s, g * s, 1))
  f = lambda x: jnp.zeros((x.shape[0], 3))
  region = np.asarray(sm.foreground_region(fg, (12, 12), grid=g))
  on_fg = jnp.asarray(region, jnp.float32)[..., None] * 2.0 + 0.1
  r = exp.segment_report(config, f, x, fg, on_fg)
  np.testing.assert_allclose(r['ft'], 1.0)
  np.testing.assert_allclose(r['segment_pointing_game'], 1.0)
  np.testing.assert_allclose(r['foreground_mass'], 2.1 / (2.1 + 8 * 0.1),
                             rtol=1e-5)
  # Shifted by one segment: every score misses.
  other = sm.foreground_region((fg + 1) % 9, (12, 12), grid=g)
  r = exp.segment_report(config, f, x, fg,
                         jnp.asarray(other, jnp.float32)[..., None])
  np.testing.assert_allclose(r['ft'], 0.0)
  np.testing.assert_allclose(r['foreground_mass'], 0.0)
  # One hot pixel in the foreground but more mass elsewhere: the pointing
  # game hits, FT (segment means) misses.
  spread = np.asarray(other, np.float32) * 0.5
  spread[np.arange(4), (np.asarray(fg) // 3) * 4, (np.asarray(fg) % 3) * 4] = 1
  r = exp.segment_report(config, f, x, fg, jnp.asarray(spread)[..., None])
  np.testing.assert_allclose(r['segment_pointing_game'], 1.0)
  np.testing.assert_allclose(r['ft'], 0.0)
  # alpha-like (B, m) scores and a constant map (ties: strict 0, random 1/m).
  alpha = jax.nn.one_hot(fg, 9) * 0.9 + 0.1 / 9
  np.testing.assert_allclose(
      exp.segment_report(config, f, x, fg, alpha)['ft'], 1.0)
  flat = exp.segment_report(config, f, x, fg, jnp.ones((4, 12, 12, 1)))
  np.testing.assert_allclose(flat['ft'], 0.0)
  np.testing.assert_allclose(flat['ft_random_ties'], 1 / 9, rtol=1e-5)


def test_segment_report_on_flat_synthetic_maps():
  exp = _experiment()
  config = _pool_config('synthetic')
  fg = jnp.array([2, 7])
  x = jnp.zeros((2, 9, 2))
  f = lambda x: x.reshape(x.shape[0], -1)[:, :3]
  imp = jnp.zeros((2, 9, 2)).at[jnp.arange(2), fg].set(1.0)
  r = exp.segment_report(config, f, x, fg, imp)
  np.testing.assert_allclose(r['ft'], 1.0)
  np.testing.assert_allclose(r['foreground_mass'], 1.0)
  r = exp.segment_report(config, f, x, fg, imp[:, ::-1])  # mirrored: misses
  np.testing.assert_allclose(r['ft'], 0.0)


def test_mask_spread_tells_a_foreground_finder_from_a_constant_mask():
  exp = _experiment()
  config = _pool_config()
  fg = np.array([0, 4, 8])
  region = np.asarray(sm.foreground_region(jnp.asarray(fg), (12, 12), grid=3))
  finder = 1.0 - 0.9 * region[..., None]  # keeps (0.1) the foreground only
  seg = np.asarray(exp.mask_segments(config, jnp.asarray(finder, jnp.float32)))
  np.testing.assert_allclose(seg, 1 - 0.9 * np.eye(9)[fg], rtol=1e-6)
  s = exp.mask_spread(seg, fg)
  np.testing.assert_allclose(
      [s['mask_foreground'], s['mask_background'], s['mask_mean']],
      [0.1, 1.0, (0.1 + 8) / 9], rtol=1e-6)
  np.testing.assert_allclose(s['mask_input_dependence'],
                             3 * np.std([0.1, 1, 1]) / 9, rtol=1e-6)
  const = exp.mask_spread(np.full((3, 9), 0.7), fg)
  np.testing.assert_allclose(
      [const['mask_foreground'], const['mask_background'],
       const['mask_input_dependence']], [0.7, 0.7, 0.0], atol=1e-12)


def test_dependence_checks_tell_a_foreground_reader_from_a_background_one():
  exp = _experiment()
  config = _pool_config('synthetic')
  fg = jnp.array([0, 3, 8, 5])
  x = jnp.zeros((4, 9, 2)).at[jnp.arange(4), fg, 0].set(
      jnp.array([1., 2., 3., 1.]))
  task = type('T', (), {'noise': __import__('lanjax').ConstantNoise(0.0)})()
  # Reads the foreground (the largest x_1): prediction = its value's class.
  reads_fg = lambda x: jax.nn.one_hot(x[..., 0].max(-1).astype(int) % 3, 3)
  d = exp.dependence_checks(config, task, reads_fg, x, fg, jax.random.key(0))
  np.testing.assert_allclose(d['keeps_prediction_foreground_only'], 1.0)
  np.testing.assert_allclose(d['changes_without_foreground'],
                             [1.0, 1.0, 0.0, 1.0])  # 3 % 3 == 0 % 3
  # Reads segment 0 only: changes only where segment 0 is the foreground.
  reads_0 = lambda x: jax.nn.one_hot((x[:, 0, 0] > 0).astype(int), 3)
  d = exp.dependence_checks(config, task, reads_0, x, fg, jax.random.key(0))
  np.testing.assert_allclose(d['changes_without_foreground'],
                             [1.0, 0.0, 0.0, 0.0])


def test_bad_sdc_configs_are_refused():
  exp = _experiment()
  config = load_config('sdc', 'synthetic')
  config.fs = ('fcam', 'cnn')
  with pytest.raises(ValueError, match="config.fs=\\('fcam',\\)"):
    exp.load_data(config)
  config = load_config('sdc', 'quick')
  config.fs = ('mlp',)
  with pytest.raises(ValueError, match='config.fs'):
    exp.tasks(config, None)
  config = load_config('sdc', 'quick')
  config.data.num_classes = 4
  with pytest.raises(ValueError, match='num_classes'):
    exp.load_data(config)


def _tiny(config):
  config.f.num_steps = 6
  config.f.eval_every = 3
  config.lan.num_steps = 4
  config.log_every = 2
  config.checkpoint_every = 4
  config.eval.num_examples = 40
  config.eval.compare_examples = 4
  config.eval.compare_batch = 4
  config.eval.curve_steps = 2
  config.eval.sanity_lan_steps = 2
  config.eval.method_settings.rise.num_masks = 8
  config.eval.method_settings.mask_optimisation.num_steps = 2
  config.eval.method_settings.smoothgrad.num_samples = 2
  config.eval.method_settings.integrated_gradients.num_steps = 2
  return config


@pytest.mark.slow
def test_synthetic_experiment_end_to_end(tmp_path):
  """d = 2: F, A, the table with alpha's row, the landscape, false claims."""
  from lanjax.experiments import skeleton  # pylint: disable=g-import-not-at-top
  exp = _experiment()
  config = _tiny(load_config('sdc', 'synthetic'))
  config.data.num_test = 100
  config.eval.compare_examples = 16
  config.eval.compare_batch = 16
  # Every method runs end to end in the translated-MNIST mock test.
  config.eval.methods = ('lan', 'gradient', 'occlusion', 'random')
  skeleton.train(exp.EXPERIMENT, config, str(tmp_path))
  out = skeleton.evaluate(exp.EXPERIMENT, config, str(tmp_path))
  m = json.loads((tmp_path / 'metrics.json').read_text())
  assert m['experiment'] == 'sdc' and set(m['tasks']) == {'fcam'}
  t = out['tasks']['fcam']
  assert list(t['segment_comparison']) == ['alpha', *config.eval.methods]
  assert list(t['comparison']['methods'])[0] == 'alpha'
  assert 'pointing_game' in t['comparison']['methods']['lan']
  for name in ('sdc_table.md', 'comparison.md', 'sdc_focus_landscape.png'):
    assert (tmp_path / 'fcam' / name).stat().st_size > 0, name
  table = (tmp_path / 'fcam' / 'sdc_table.md').read_text()
  assert table.count('\n| ') == len(config.eval.methods) + 2
  # Fig. 5's breakdown counts the same examples as the table and the
  # accuracy, each on its own path: alpha's FT is its focus-true cells, F's
  # accuracy its prediction-true cells.
  fp = t['alpha']['focus_predict']
  assert fp['ftpt'] + fp['ftpf'] == pytest.approx(t['alpha']['ft'], abs=1e-6)
  assert fp['ftpt'] + fp['ffpt'] == pytest.approx(t['f_test_accuracy'],
                                                  abs=1e-6)
  assert 1 <= t['alpha']['nnz'] <= 9
  # 6 steps of F, 4 of A: nothing the issue asks for holds.
  assert set(out['claims']) == {'fcam/f_is_accurate',
                                'fcam/lan_ft_at_least_fcam_ft',
                                'fcam/lan_finds_foreground'}
  assert not any(out['claims'].values()), out['claims_detail']


@pytest.mark.slow
def test_quick_experiment_end_to_end_on_mock_data(tmp_path):
  tfds = pytest.importorskip('tensorflow_datasets')
  from lanjax.experiments import skeleton  # pylint: disable=g-import-not-at-top
  exp = _experiment()
  config = _tiny(load_config('sdc', 'quick'))
  config.data.data_dir = str(tmp_path / 'no_data_here')
  config.data.num_train = 200
  config.data.num_test = 60
  config.eval.num_figure_examples = 2
  # Every method and the FCAM's alpha row run in the synthetic end-to-end
  # test, the FCAM on real mosaics in the CLI test below; here the image path
  # of the plain CNN with one method of each kind keeps the suite short.
  config.fs = ('cnn',)
  config.eval.methods = ('lan', 'gradient', 'occlusion', 'random')
  with tfds.testing.mock_data(num_examples=200):
    skeleton.train(exp.EXPERIMENT, config, str(tmp_path))
    out = skeleton.evaluate(exp.EXPERIMENT, config, str(tmp_path))
  for kind in config.fs:
    d = tmp_path / kind
    for name in ('sdc_table.md', 'comparison.md', 'sdc_mosaics.png',
                 'perturbation_curves.png', 'metrics.json'):
      assert (d / name).stat().st_size > 0, (kind, name)
    t = json.loads((d / 'metrics.json').read_text())
    expected = set(config.eval.methods) | ({'alpha'} if kind == 'fcam'
                                           else set())
    assert set(t['comparison']['methods']) == expected
    assert set(t['segment_comparison']) == expected
    assert t['f_step'] == config.f.num_steps
    assert t['lan_step'] == config.lan.num_steps
    # 4 steps of A on random mosaics: its top segment does not follow the
    # foreground, so FT is a count of mosaics at chance, Binomial(n, 1/9)
    # (P(count > 12 of 40) < 0.001); an FT that counts ties or the
    # background as focus is far above.
    count = t['lan']['ft'] * t['num_test_examples']
    assert count == pytest.approx(round(count), abs=1e-4) and count <= 12
  assert not (tmp_path / 'fcam').exists()
  # Random mock images with random labels: every claim is false.
  assert set(out['claims']) == {
      'cnn/f_is_accurate', 'cnn/lan_ft_at_least_0.9',
      'cnn/lan_finds_foreground'}
  assert not any(out['claims'].values()), out['claims_detail']


@pytest.mark.slow
def test_train_cli_on_real_mnist_sdc(tmp_path, shared_tfds_dir):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from conftest import ROOT, subprocess_env  # pylint: disable=g-import-not-at-top
  env = subprocess_env(TFDS_DATA_DIR=shared_tfds_dir)
  r = subprocess.run(
      [sys.executable, str(ROOT / 'train.py'), '--config',
       str(ROOT / 'configs' / 'sdc.py:quick'), '--workdir', str(tmp_path),
       "--config.fs=('fcam',)", '--config.eval.compare_examples=0'],
      env=env, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  m = json.loads((tmp_path / 'metrics.json').read_text())
  t = m['tasks']['fcam']
  # 30 steps of the FCAM on real digits: far above chance (1/3), and alpha
  # already points at the foreground far above chance (1/9).
  assert t['f_test_accuracy'] > 0.6
  assert t['alpha']['ft'] > 0.3 and 1 <= t['alpha']['nnz'] <= 9
  assert 'comparison' not in t
