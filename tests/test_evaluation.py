"""The evaluation protocol (lanjax.evaluation) and its metrics."""

import doctest
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import stats

import lanjax
from lanjax import attribution
from lanjax import evaluation
from lanjax import metrics
from lanjax.models import ConvClassifier

KEY = jax.random.key(0, impl='rbg')  # fast to compile on CPU


def _rng(seed=0):
  return np.random.default_rng(seed)


def _two_class(w):
  """Logits (0, flat(x) @ w): class 1's probability is sigmoid(x @ w)."""
  return lambda x: jnp.stack(
      [jnp.zeros(x.shape[0]), x.reshape(x.shape[0], -1) @ w], -1)


def _sig(z):
  return 1 / (1 + np.exp(-z))


# ----------------------------------------------------------------------------
# Deletion and insertion curves.


def test_deletion_and_insertion_curves_match_hand_computation():
  w = jnp.array([3.0, 1.0, 0.0, 2.0])
  f = _two_class(w)
  x = jnp.ones((1, 4))
  importance = jnp.array([[0.9, 0.2, 0.1, 0.5]])  # order 0, 3, 1, 2
  zero = metrics.removal_by_noise(lanjax.ConstantNoise(0.0))
  curve, auc = metrics.perturbation_curve(f, x, importance, key=KEY,
                                          removal=zero, num_steps=4)
  deleted = _sig(np.array([6.0, 3.0, 1.0, 0.0, 0.0]))
  np.testing.assert_allclose(curve[:, 0], deleted, rtol=1e-5)
  np.testing.assert_allclose(auc[0], ((deleted[1:] + deleted[:-1]) / 2).mean(),
                             rtol=1e-5)
  curve, auc = metrics.perturbation_curve(
      f, x, importance, key=KEY, removal=zero, mode='insertion', num_steps=4)
  inserted = _sig(np.array([0.0, 3.0, 5.0, 6.0, 6.0]))
  np.testing.assert_allclose(curve[:, 0], inserted, rtol=1e-5)
  # The old order-based API is the same protocol.
  old, _ = metrics.deletion_curve(f, x, jnp.array([[0, 3, 1, 2]]), num_steps=4)
  np.testing.assert_allclose(old[:, 0], deleted, rtol=1e-5)


def test_curve_tracks_a_caller_score_and_the_clean_class():
  w = jnp.array([1.0, -1.0])
  f = _two_class(w)
  x = jnp.array([[-2.0, 1.0]])  # class 0 (logit 0 > -3)
  zero = metrics.removal_by_mean()
  curve, _ = metrics.perturbation_curve(f, x, jnp.array([[1.0, 0.0]]),
                                        key=KEY, removal=zero, num_steps=2)
  np.testing.assert_allclose(curve[0, 0], 1 - _sig(-3.0), rtol=1e-5)
  # Mean of (-2, 1) is -0.5: after the first removal x = (-0.5, 1).
  np.testing.assert_allclose(curve[1, 0], 1 - _sig(-1.5), rtol=1e-5)
  curve, _ = metrics.perturbation_curve(
      f, x, jnp.array([[1.0, 0.0]]), key=KEY, removal=zero, num_steps=2,
      score=lambda out, x: out[:, 1] - x.sum(-1))
  np.testing.assert_allclose(curve[:, 0], [-3 + 1, -1.5 + 1, 0 + 1],
                             rtol=1e-5)


def test_a_map_pixel_removes_all_its_channels():
  f = lambda x: jnp.stack([jnp.zeros(x.shape[0]), x.sum((1, 2, 3))], -1)
  x = jnp.ones((1, 2, 2, 3))
  importance = jnp.array([4.0, 3.0, 2.0, 1.0]).reshape(1, 2, 2, 1)
  zero = metrics.removal_by_noise(lanjax.ConstantNoise(0.0))
  curve, _ = metrics.perturbation_curve(f, x, importance, key=KEY,
                                        removal=zero, num_steps=4)
  np.testing.assert_allclose(curve[:, 0], _sig(np.array([12., 9, 6, 3, 0])),
                             rtol=1e-5)


def test_ties_are_broken_at_random_not_in_raster_order():
  # F reads the first component only: raster order would delete it first.
  f = lambda x: jnp.stack([jnp.zeros(x.shape[0]), 5 * x[:, 0]], -1)
  x = jnp.ones((200, 10))
  zero = metrics.removal_by_noise(lanjax.ConstantNoise(0.0))
  _, auc_const = metrics.perturbation_curve(f, x, jnp.ones((200, 10)),
                                            key=KEY, removal=zero,
                                            num_steps=10)
  first = jnp.zeros((200, 10)).at[:, 0].set(1.0)
  _, auc_good = metrics.perturbation_curve(f, x, first, key=KEY,
                                           removal=zero, num_steps=10)
  _, auc_bad = metrics.perturbation_curve(f, x, -first, key=KEY,
                                          removal=zero, num_steps=10)
  assert float(auc_good.mean()) < float(auc_const.mean()) - 0.2
  assert float(auc_const.mean()) < float(auc_bad.mean()) - 0.2


def test_rank_order_is_a_permutation_most_important_first():
  imp = jnp.asarray(_rng().normal(size=(3, 4, 5)))
  rank = metrics.rank_order(imp, key=KEY)
  flat = np.asarray(rank.reshape(3, -1))
  np.testing.assert_array_equal(np.sort(flat, -1), np.tile(np.arange(20),
                                                           (3, 1)))
  np.testing.assert_array_equal(
      flat, np.argsort(np.argsort(-np.asarray(imp).reshape(3, -1), -1), -1))


def test_removal_operators():
  x = jnp.asarray(_rng().uniform(size=(2, 9, 9, 2)), jnp.float32)
  mean = metrics.removal_by_mean()(KEY, x)
  np.testing.assert_allclose(mean[:, 3, 4], x.mean((1, 2)), rtol=1e-6)
  blur = metrics.removal_by_blur(1.0)
  const = jnp.full((1, 9, 9, 1), 0.7)
  np.testing.assert_allclose(blur(KEY, const), const, rtol=1e-6)
  impulse = jnp.zeros((1, 15, 15, 1)).at[0, 7, 7, 0].set(1.0)
  out = blur(KEY, impulse)
  np.testing.assert_allclose(float(out.sum()), 1.0, rtol=1e-5)
  assert 0 < float(out[0, 7, 7, 0]) < 0.5
  np.testing.assert_allclose(out[0, 7, 6, 0], out[0, 6, 7, 0], rtol=1e-6)
  assert float(out[0, 7, 6, 0]) > float(out[0, 7, 5, 0]) > 0
  # Inputs without channels (B, d): blurred along d, the Gaussian's taps.
  line = blur(KEY, jnp.zeros((2, 15)).at[:, 7].set(1.0))
  taps = np.exp(-0.5 * np.arange(-3, 4) ** 2)
  np.testing.assert_allclose(line[:, 4:11], np.tile(taps / taps.sum(), (2, 1)),
                             rtol=1e-5)
  eta = metrics.removal_by_noise(lanjax.BootstrapNoise(x[:1] + 5))(KEY, x)
  np.testing.assert_allclose(eta, jnp.broadcast_to(x[:1] + 5, x.shape))
  with pytest.raises(ValueError, match='sigma'):
    metrics.removal_by_blur(0.0)


@pytest.mark.parametrize('bad,match', [
    (dict(mode='both'), 'mode'), (dict(num_steps=0), 'num_steps'),
    (dict(importance=jnp.ones((3, 4))), 'batch axis'),
    (dict(removal=lambda key, x: x[:, :2]), "x's shape"),
])
def test_perturbation_curve_bad_arguments(bad, match):
  kw = dict(importance=jnp.ones((2, 4)), key=KEY,
            removal=metrics.removal_by_mean())
  kw.update(bad)
  with pytest.raises(ValueError, match=match):
    metrics.perturbation_curve(_two_class(jnp.ones(4)), jnp.ones((2, 4)),
                               **kw)


# ----------------------------------------------------------------------------
# Statistics.


def test_rank_correlation_is_spearman_with_ties():
  rng = _rng(1)
  a = rng.integers(0, 5, (4, 30)).astype(np.float32)  # many ties
  b = a + rng.normal(size=(4, 30)) * 2
  expected = [stats.spearmanr(a[i], b[i]).statistic for i in range(4)]
  np.testing.assert_allclose(metrics.rank_correlation(a, b), expected,
                             rtol=1e-5)
  np.testing.assert_allclose(metrics.rank_correlation(a, -a), -1, rtol=1e-6)
  const = np.ones((2, 30))
  np.testing.assert_allclose(metrics.rank_correlation(const, const), 1)
  np.testing.assert_allclose(metrics.rank_correlation(const, b[:2]), 0)


def test_bootstrap_ci_contains_the_mean_and_shrinks_with_more_examples():
  rng = _rng(2)
  small = rng.normal(1.0, 1.0, 20)
  large = rng.normal(1.0, 1.0, 2000)
  m, lo, hi = metrics.bootstrap_ci(small, seed=0)
  np.testing.assert_allclose(m, small.mean())
  assert lo < m < hi
  # Width ~ 2 * 1.96 / sqrt(n).
  np.testing.assert_allclose(hi - lo, 2 * 1.96 * small.std() / np.sqrt(20),
                             rtol=0.25)
  ml, lol, hil = metrics.bootstrap_ci(large, seed=0)
  assert lol < ml < hil
  assert (hil - lol) < (hi - lo) / 5
  # With 2,000 examples the mean is near normal: the 95% interval is
  # 2 x 1.96 standard errors wide (4,000 resamples: within 4%).
  _, lo4, hi4 = metrics.bootstrap_ci(large, seed=0, num=4000)
  np.testing.assert_allclose(hi4 - lo4,
                             2 * 1.96 * large.std() / np.sqrt(2000), rtol=0.04)
  # float32 values are averaged in float64: 2**24 + 3 is not a float32.
  v32 = np.array([2.0 ** 24, 1.0, 1.0, 1.0], np.float32)
  assert metrics.bootstrap_ci(v32)[0] == (2.0 ** 24 + 3) / 4
  _, lo90, hi90 = metrics.bootstrap_ci(small, seed=0, level=0.9)
  assert hi90 - lo90 < hi - lo
  assert metrics.bootstrap_ci(small, seed=jax.random.key(3))[0] == m
  # A key seeds the resampling as an int does: the same key, the same
  # interval (a claim's interval must not change between two reports).
  by_key = metrics.bootstrap_ci(small, seed=jax.random.key(3))
  assert metrics.bootstrap_ci(small, seed=jax.random.key(3)) == by_key
  assert metrics.bootstrap_ci(small, seed=jax.random.key(4)) != by_key
  assert metrics.bootstrap_ci([0.5]) == (0.5, 0.5, 0.5)
  with pytest.raises(ValueError, match='non-finite'):
    metrics.bootstrap_ci([1.0, np.nan])


# ----------------------------------------------------------------------------
# Cascading randomisation.


def test_cascading_randomization_goes_from_the_top_down():
  _, state = nnx.split(ConvClassifier((8, 8, 1), rngs=nnx.Rngs(0)))
  assert evaluation.layer_groups(state) == ['convs/0', 'convs/1', 'head']
  cascade = evaluation.cascading_randomization(state, KEY)
  assert [name for name, _ in cascade] == ['head', 'convs/1', 'convs/0']
  changed = lambda p, q, g: not np.allclose(
      *[jax.tree_util.tree_flatten_with_path(t)[0][g][1] for t in (p, q)])
  leaf = {name: i for i, name in enumerate(
      ['c0b', 'c0k', 'c1b', 'c1k', 'hb', 'hk'])}
  _, top = cascade[0]
  assert changed(state, top, leaf['hk']) and not changed(state, top,
                                                         leaf['c1k'])
  _, all_random = cascade[-1]
  assert all(changed(state, all_random, leaf[k]) for k in ('c0k', 'c1k',
                                                            'hk'))
  k = np.asarray(jax.tree_util.tree_leaves(state)[leaf['hk']])
  rk = np.asarray(jax.tree_util.tree_leaves(all_random)[leaf['hk']])
  np.testing.assert_allclose(rk.std(), k.std(), rtol=0.1)  # scale kept
  with pytest.raises(ValueError, match='groups'):
    evaluation.cascading_randomization(state, KEY, order=['decoder'])


def test_cascading_randomization_draws_each_leaf_and_layer_afresh():
  # Two layers with leaves of the same shapes and the same values: each leaf
  # gets its own draw (a key shared across leaves or steps would make the
  # redrawn copies equal), in float16 too (dtype kept).
  w = jnp.linspace(-1.0, 1.0, 12, dtype=jnp.float16).reshape(3, 4)
  params = {'a': {'k': w, 'k2': w}, 'b': {'k': w, 'k2': w}}
  _, all_random = evaluation.cascading_randomization(params, KEY)[-1]
  draws = [np.asarray(all_random[g][n]) for g in 'ab' for n in ('k', 'k2')]
  assert all(d.dtype == np.float16 for d in draws)
  for i in range(4):
    for j in range(i):
      assert not np.array_equal(draws[i], draws[j]), (i, j)


# ----------------------------------------------------------------------------
# The protocol on an F whose right answer is known.


def _block_problem(n=24):
  """F reads a 3x3 block of an 8x8 image (its weights); region = block.

  The block's pixels are evidence for class 1 (F's prediction): deleting them
  lowers its probability.
  """
  rng = _rng(3)
  w1 = np.zeros((8, 8, 6), np.float32)
  w1[2:5, 3:6] = np.abs(rng.normal(size=(3, 3, 6))) / 2
  w2 = np.abs(rng.normal(size=(6, 1))) * np.array([[0.0, 1.0, -1.0]])
  params = {'w1': jnp.asarray(w1.reshape(64, 6)),
            'w2': jnp.asarray(w2, jnp.float32)}
  f_apply = lambda p, x: jnp.tanh(x.reshape(x.shape[0], -1) @ p['w1']) @ p[
      'w2']
  x = jnp.asarray(rng.uniform(size=(n, 8, 8, 1)), jnp.float32)
  region = jnp.zeros((n, 8, 8), bool).at[:, 2:5, 3:6].set(True)
  return f_apply, params, x, region


def _constant(f, x, key):
  del f, key
  return jnp.ones(x.shape)


@pytest.fixture(scope='module')
def block_table():
  f_apply, params, x, region = _block_problem()
  explainers = {
      'gradient': attribution.explainer('gradient'),
      'occlusion': attribution.explainer('occlusion', window=1, stride=1),
      'random': attribution.explainer('random'),
      'constant': _constant,
  }
  return evaluation.compare(
      explainers, f_apply, params, x, key=KEY,
      removals={'zero': metrics.removal_by_noise(lanjax.ConstantNoise(0.0)),
                'blur': metrics.removal_by_blur(1.0)},
      region=region, num_steps=8, randomize=evaluation.cascading_randomization,
      batch_size=16, time_repeats=2, num_bootstrap=300)


@pytest.mark.xdist_group('test_evaluation.block_table')  # the fixture runs once
def test_protocol_ranks_methods_that_find_the_block_first(block_table):
  m = block_table['methods']
  for good in ('gradient', 'occlusion'):
    assert m[good]['pointing_game']['low'] > 0.9
    assert m['random']['pointing_game']['high'] < 0.5
    assert m[good]['mass_in_region']['low'] > m['random']['mass_in_region'][
        'high']
    # (Blur keeps the block's local mean, all this F reads: no contrast.)
    assert m[good]['deletion_auc/zero']['high'] < m['random'][
        'deletion_auc/zero']['low'] - 0.3
  # The constant map ties everywhere: it points at the block by chance only.
  np.testing.assert_allclose(m['constant']['pointing_game']['mean'], 9 / 64,
                             rtol=1e-5)


@pytest.mark.xdist_group('test_evaluation.block_table')  # the fixture runs once
def test_protocol_sanity_check_fails_maps_that_ignore_f(block_table):
  m = block_table['methods']
  assert m['gradient']['sanity_pass'] and m['occlusion']['sanity_pass']
  assert not m['constant']['sanity_pass']
  assert not m['random']['sanity_pass']  # the same key: the same map
  assert m['constant']['sanity_rank_corr/w1']['mean'] == 1.0


@pytest.mark.xdist_group('test_evaluation.block_table')  # the fixture runs once
def test_protocol_table_is_complete_with_intervals(block_table):
  t = block_table
  assert t['num_examples'] == 24 and t['num_steps'] == 8
  json.loads(json.dumps(t))
  expected = {'deletion_auc/zero', 'insertion_auc/zero', 'deletion_auc/blur',
              'insertion_auc/blur', 'pointing_game', 'mass_in_region',
              'sanity_rank_corr/w2', 'sanity_rank_corr/w1',
              'seconds_per_example'}
  assert set(t['metrics']) == expected
  for values in t['methods'].values():
    for name in expected:
      v = values[name]
      assert v['low'] <= v['mean'] <= v['high'], name
    assert values['seconds_per_example']['mean'] > 0
  for curves in t['curves'].values():
    assert len(curves['deletion/zero']) == 9
    assert len(curves['insertion/blur']) == 9
  # Insertion: the good maps put back what F reads first.
  m = t['methods']
  assert m['gradient']['insertion_auc/zero']['low'] > m['random'][
      'insertion_auc/zero']['high']


@pytest.mark.xdist_group('test_evaluation.block_table')  # the fixture runs once
def test_markdown_table_and_figure(block_table, tmp_path):
  text = evaluation.markdown_table(block_table,
                                   metrics=['deletion_auc/zero',
                                            'pointing_game'])
  lines = text.splitlines()
  assert lines[0] == '| method | deletion_auc/zero | pointing_game | sanity |'
  assert len(lines) == 2 + 4
  assert any(l.startswith('| constant |') and l.endswith('| FAIL |')
             for l in lines)
  g = block_table['methods']['gradient']['pointing_game']
  assert f'{g["mean"]:.3g} [{g["low"]:.3g}, {g["high"]:.3g}]' in text
  from lanjax.experiments import figures  # pylint: disable=g-import-not-at-top
  path = tmp_path / 'curves.png'
  figures.perturbation_curves(block_table, str(path), title='block')
  assert path.stat().st_size > 1000


def test_compare_bad_arguments():
  f_apply, params, x, region = _block_problem(4)
  explainers = {'random': attribution.explainer('random')}
  rem = {'mean': metrics.removal_by_mean()}
  with pytest.raises(ValueError, match='removals'):
    evaluation.compare(explainers, f_apply, params, x, key=KEY, removals={})
  with pytest.raises(ValueError, match='explainers'):
    evaluation.compare({}, f_apply, params, x, key=KEY, removals=rem)
  with pytest.raises(ValueError, match='region'):
    evaluation.compare(explainers, f_apply, params, x, key=KEY, removals=rem,
                       region=region[:2])
  with pytest.raises(ValueError, match='batch_size'):
    evaluation.compare(explainers, f_apply, params, x, key=KEY, removals=rem,
                       batch_size=0)


def test_module_examples_run():
  for module in (evaluation, attribution):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
