"""The pure LAN functions against hand-computed values, under jit."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import lanjax
from lanjax import corruption, losses, metrics, noise, objective


# ----------------------------------------------------------------------------
# Corruption, eq. (2).


def test_corrupt_hand_values_under_jit():
  x = jnp.array([[1.0, 2.0, 3.0]])
  mask = jnp.array([[0.0, 0.25, 1.0]])
  eta = jnp.array([[5.0, 6.0, 7.0]])
  out = jax.jit(lanjax.corrupt)(x, mask, eta)
  np.testing.assert_allclose(out, [[1.0, 0.25 * 6 + 0.75 * 2, 7.0]])


def test_mask_zero_gives_x_and_mask_one_gives_noise_exactly():
  k1, k2 = jax.random.split(jax.random.key(0))
  x = jax.random.normal(k1, (4, 5, 5, 3)) * 1e3
  eta = jax.random.normal(k2, (4, 5, 5, 3)) * 1e-3
  np.testing.assert_array_equal(lanjax.corrupt(x, jnp.zeros_like(x), eta), x)
  np.testing.assert_array_equal(lanjax.corrupt(x, jnp.ones_like(x), eta), eta)


def test_one_channel_mask_is_tiled_over_channels():
  x = jnp.zeros((2, 3, 3, 3))
  eta = jnp.ones((2, 3, 3, 3)) * jnp.array([1.0, 2.0, 3.0])
  mask = jnp.zeros((2, 3, 3, 1)).at[:, 1, 1, 0].set(1.0)
  out = lanjax.corrupt(x, mask, eta)
  np.testing.assert_array_equal(out[:, 1, 1], [[1, 2, 3], [1, 2, 3]])
  assert float(jnp.abs(out).sum()) == 2 * 6


@pytest.mark.parametrize('mask_shape', [(2, 3, 3, 2), (2, 4, 3, 1),
                                        (1, 2, 3, 3, 3)])
def test_mask_that_does_not_broadcast_is_rejected(mask_shape):
  with pytest.raises(ValueError, match='does not broadcast|more axes'):
    lanjax.corrupt(jnp.zeros((2, 3, 3, 3)), jnp.zeros(mask_shape),
                   jnp.zeros((2, 3, 3, 3)))


# ----------------------------------------------------------------------------
# Noise distributions.


def test_constant_noise_shape_value_dtype():
  x = jnp.ones((3, 4), jnp.float32)
  eta = jax.jit(lambda k, x: noise.ConstantNoise(0.5).sample(k, x, 7))(
      jax.random.key(0), x)
  assert eta.shape == (7, 3, 4) and eta.dtype == jnp.float32
  np.testing.assert_array_equal(eta, 0.5)


def test_bootstrap_noise_draws_pool_rows_uniformly_with_replacement():
  pool = jnp.arange(5.0)[:, None] * jnp.ones((5, 2))  # row i is [i, i]
  sampler = noise.BootstrapNoise(pool)
  eta = jax.jit(lambda n, k, x: n.sample(k, x, 400))(
      sampler, jax.random.key(1), jnp.zeros((3, 2)))
  assert eta.shape == (400, 3, 2)
  # Every draw is one row of the pool.
  np.testing.assert_array_equal(eta[..., 0], eta[..., 1])
  values, counts = np.unique(np.asarray(eta[..., 0]), return_counts=True)
  np.testing.assert_array_equal(values, np.arange(5.0))
  # Uniform: 1200 draws over 5 rows, each within 5 sigma of 240.
  assert np.all(np.abs(counts - 240) < 5 * math.sqrt(1200 * 0.2 * 0.8))
  # Different samples and examples get different draws.
  assert len(np.unique(np.asarray(eta[:, 0, 0]))) == 5


def test_bootstrap_noise_is_deterministic_in_the_key():
  sampler = noise.BootstrapNoise(jnp.arange(100.0)[:, None])
  x = jnp.zeros((8, 1))
  a = sampler.sample(jax.random.key(3), x, 4)
  b = sampler.sample(jax.random.key(3), x, 4)
  c = sampler.sample(jax.random.key(4), x, 4)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_bootstrap_noise_transform_and_shape_check():
  pool = jnp.ones((10, 2, 2))
  pad = lambda key, d: jnp.pad(d, ((0, 0), (0, 0), (1, 1), (1, 1)))
  eta = noise.BootstrapNoise(pool, pad).sample(jax.random.key(0),
                                               jnp.zeros((3, 4, 4)), 2)
  assert eta.shape == (2, 3, 4, 4)
  assert float(eta.sum()) == 2 * 3 * 4
  with pytest.raises(ValueError, match='shape'):
    noise.BootstrapNoise(pool).sample(jax.random.key(0), jnp.zeros((3, 4, 4)),
                                      2)


def test_gaussian_noise_has_its_mean_and_std_per_feature():
  mean, std = np.asarray([1.0, -3.0]), np.asarray([0.5, 2.0])
  sampler = noise.GaussianNoise(mean, std)
  x = jnp.zeros((50, 9, 2))
  eta = jax.jit(lambda n, k, x: n.sample(k, x, 40))(sampler,
                                                     jax.random.key(0), x)
  assert eta.shape == (40, 50, 9, 2) and eta.dtype == jnp.float32
  flat = np.asarray(eta).reshape(-1, 2)  # 18,000 draws per feature
  np.testing.assert_array_less(np.abs(flat.mean(0) - mean), 5 * std / 134)
  np.testing.assert_allclose(flat.std(0), std, rtol=0.03)
  np.testing.assert_allclose(sampler.sample(jax.random.key(0), x, 40), eta,
                             rtol=1e-5, atol=1e-6)  # jit may fuse (FMA)
  assert not np.array_equal(sampler.sample(jax.random.key(1), x, 40), eta)
  # Independent across samples and examples.
  assert abs(np.corrcoef(flat[:-1, 0], flat[1:, 0])[0, 1]) < 0.05


def test_bad_noise_config_errors():
  with pytest.raises(ValueError, match='empty'):
    noise.BootstrapNoise(jnp.zeros((0, 3)))
  with pytest.raises(ValueError, match='positive int'):
    noise.ConstantNoise(0.0).sample(jax.random.key(0), jnp.zeros((2,)), 0)
  with pytest.raises(ValueError, match='Unknown noise kind'):
    noise.make_noise('gaussian')
  assert isinstance(noise.make_noise('constant', value=1.0),
                    noise.ConstantNoise)


# ----------------------------------------------------------------------------
# Output losses.


def test_softmax_cross_entropy_hand_value():
  logits = jnp.array([[0.0, math.log(3.0)]])  # softmax = [1/4, 3/4]
  target = jnp.array([[0.0, 0.0]])  # softmax = [1/2, 1/2]
  expected = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
  np.testing.assert_allclose(
      jax.jit(losses.softmax_cross_entropy)(logits, target), [expected],
      rtol=1e-6)


def test_softmax_cross_entropy_is_finite_for_extreme_logits():
  logits = jnp.array([[1e4, -1e4, 0.0]])
  target = jnp.array([[-1e4, 1e4, 0.0]])
  value, grad = jax.value_and_grad(
      lambda l: losses.softmax_cross_entropy(l, target).sum())(logits)
  assert np.isfinite(value) and np.all(np.isfinite(grad))
  np.testing.assert_allclose(value, 2e4, rtol=1e-6)


def test_no_gradient_flows_into_the_target():
  logits = jnp.array([[0.3, -0.2, 1.0]])
  target = jnp.array([[1.0, 2.0, 0.5]])
  for loss in (losses.softmax_cross_entropy, losses.squared_error):
    g = jax.grad(lambda t: loss(logits, t).sum())(target)
    np.testing.assert_array_equal(g, 0.0)


def test_squared_error_hand_value():
  out = jnp.array([[1.0, 2.0], [0.0, 0.0]])
  tgt = jnp.array([[1.0, 0.0], [3.0, 4.0]])
  np.testing.assert_allclose(jax.jit(losses.squared_error)(out, tgt),
                             [2.0, 12.5])


# ----------------------------------------------------------------------------
# The objective, eq. (3).


def _toy_problem(k=3, b=2, d=4, c=3, seed=0):
  keys = jax.random.split(jax.random.key(seed), 4)
  w = jax.random.normal(keys[0], (d, c))
  f = lambda x: jnp.tanh(x) @ w
  x = jax.random.normal(keys[1], (b, d))
  mask = jax.nn.sigmoid(jax.random.normal(keys[2], (b, d)))
  eta = jax.random.normal(keys[3], (k, b, d))
  return f, x, mask, eta


def test_lan_loss_hand_value():
  # F is the identity on 2 logits; one example; K = 2 noise samples.
  f = lambda x: x
  x = jnp.array([[0.0, 0.0]])
  mask = jnp.array([[0.5, 0.0]])
  eta = jnp.array([[[2.0 * math.log(3.0), 0.0]], [[0.0, 0.0]]])
  # Sample 1: x~ = [log 3, 0] -> softmax [3/4, 1/4]; target softmax [1/2, 1/2].
  ce1 = -(0.5 * math.log(0.75) + 0.5 * math.log(0.25))
  ce2 = math.log(2.0)  # sample 2: x~ = x
  beta = 2.0
  expected = (ce1 + ce2) / 2 - beta * 0.25
  got = jax.jit(lambda m: lanjax.lan_loss(f, x, m, eta, beta=beta))(mask)
  np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_vmapped_samples_equal_a_python_loop():
  f, x, mask, eta = _toy_problem(k=5)
  per_example = lanjax.lan_loss(f, x, mask, eta, beta=0.7, reduction='none')
  target = f(x)
  loop = []
  for k in range(eta.shape[0]):
    out = f(mask * eta[k] + (1 - mask) * x)
    loop.append(losses.softmax_cross_entropy(out, target))
  expected = jnp.stack(loop).mean(0) - 0.7 * mask.mean(-1)
  np.testing.assert_allclose(per_example, expected, rtol=1e-5, atol=1e-6)


def test_reductions_and_chunking():
  f, x, mask, eta = _toy_problem(k=7, b=3)
  none = lanjax.lan_loss(f, x, mask, eta, beta=1.0, reduction='none')
  assert none.shape == (3,)
  np.testing.assert_allclose(
      lanjax.lan_loss(f, x, mask, eta, beta=1.0), none.mean(), rtol=1e-6)
  np.testing.assert_allclose(
      lanjax.lan_loss(f, x, mask, eta, beta=1.0, reduction='sum'), none.sum(),
      rtol=1e-6)
  chunked = lanjax.lan_loss(f, x, mask, eta, beta=1.0, reduction='none',
                            chunk_size=3)
  np.testing.assert_allclose(chunked, none, rtol=1e-6)
  with pytest.raises(ValueError, match='reduction'):
    lanjax.lan_loss(f, x, mask, eta, beta=1.0, reduction='max')


def test_check_grads_of_the_objective():
  with jax.enable_x64(True):  # finite differences need double precision
    f, x, mask, eta = _toy_problem()
    mask, x, eta = (a.astype(jnp.float64) for a in (mask, x, eta))
    # F(x) is a constant target (stop_gradient): fix it to differentiate in x.
    target = f(x)
    fn = lambda m, x: lanjax.lan_loss(f, x, m, eta, beta=0.5, target=target)
    check_grads(fn, (mask, x), order=2, modes=['fwd', 'rev'])
    # Without a fixed target, x's gradient excludes the path through F(x).
    g = jax.grad(lambda x: lanjax.lan_loss(f, x, mask, eta, beta=0.5))(x)
    g_fixed = jax.grad(lambda z: fn(mask, z))(x)
    np.testing.assert_allclose(g, g_fixed, rtol=1e-10)


def test_beta_term_has_the_right_sign():
  f, x, mask, eta = _toy_problem()
  # The loss falls by beta * mean(mask): more corruption is rewarded.
  l0 = lanjax.lan_loss(f, x, mask, eta, beta=0.0, reduction='none')
  l2 = lanjax.lan_loss(f, x, mask, eta, beta=2.0, reduction='none')
  np.testing.assert_allclose(l0 - l2, 2.0 * mask.mean(-1), rtol=1e-5)
  # Gradient descent on the mask with a larger beta ends with a larger mask.
  def descend(beta):
    logits = jnp.zeros_like(mask)
    grad = jax.jit(jax.grad(lambda z: lanjax.lan_loss(
        f, x, jax.nn.sigmoid(z), eta, beta=beta)))
    for _ in range(50):
      logits = logits - 1.0 * grad(logits)
    return float(jax.nn.sigmoid(logits).mean())
  assert descend(0.05) < descend(5.0)


def test_objective_shape_errors():
  f, x, mask, eta = _toy_problem()
  with pytest.raises(ValueError, match=r'\(K, \*x.shape\)'):
    lanjax.lan_loss(f, x, mask, eta[0], beta=1.0)
  with pytest.raises(ValueError, match='does not broadcast'):
    lanjax.lan_loss(f, x, mask[:, :3], eta, beta=1.0)
  shape_changing = lambda z: z if z is x else z[:, :2]
  with pytest.raises(ValueError, match='F returns shape'):
    lanjax.lan_loss(shape_changing, x, mask, eta, beta=1.0)


def test_objective_accepts_any_callable_and_a_precomputed_target():
  f, x, mask, eta = _toy_problem()
  a = lanjax.lan_loss(f, x, mask, eta, beta=1.0)
  b = lanjax.lan_loss(f, x, mask, eta, beta=1.0, target=f(x))
  c = lanjax.lan_loss(f, x, mask, eta, beta=1.0,
                      output_loss=lanjax.squared_error)
  np.testing.assert_allclose(a, b)
  assert not np.allclose(a, c)


# ----------------------------------------------------------------------------
# Metrics.


def test_mass_in_region_and_pointing_game():
  score = jnp.zeros((3, 4, 4))
  region = jnp.zeros((3, 4, 4), bool).at[:, :2, :2].set(True)
  score = score.at[0, 0, 0].set(1.0)            # all mass inside, top inside
  score = score.at[1, 3, 3].set(3.0).at[1, 0, 0].set(1.0)  # 1/4 inside
  # Example 2: constant map -> ties everywhere -> expected hit = area share.
  score = score.at[2].set(0.5)
  np.testing.assert_allclose(metrics.mass_in_region(score, region),
                             [1.0, 0.25, 0.25])
  np.testing.assert_allclose(metrics.pointing_game(score, region),
                             [1.0, 0.0, 0.25])


def test_box_region_and_agreement():
  boxes = jnp.array([[0, 0], [2, 1]])
  r = metrics.box_region(boxes, 2, (4, 4))
  assert r.shape == (2, 4, 4)
  np.testing.assert_array_equal(r.sum((1, 2)), [4, 4])
  assert bool(r[1, 2, 1]) and bool(r[1, 3, 2]) and not bool(r[1, 1, 1])
  # Corners from numpy (row 1, column 3) on a wide map: a hand-built box.
  want = np.zeros((1, 4, 6), bool)
  want[0, 1:3, 3:5] = True
  np.testing.assert_array_equal(
      metrics.box_region(np.array([[1, 3]]), 2, (4, 6)), want)
  np.testing.assert_array_equal(
      metrics.agreement(jnp.array([[1.0, 0.0], [0.0, 1.0]]),
                        jnp.array([[2.0, 1.0], [2.0, 1.0]])), [1.0, 0.0])


def test_deletion_curve_orders():
  # F sums the first two components into class 1's logit.
  f = lambda x: jnp.stack([jnp.zeros(x.shape[0]), 4 * (x[:, 0] + x[:, 1])],
                          -1)
  x = jnp.ones((1, 4))
  good = jnp.array([[0, 1, 2, 3]])  # important first
  bad = jnp.array([[3, 2, 1, 0]])
  curve_g, auc_g = metrics.deletion_curve(f, x, good, num_steps=4)
  curve_b, auc_b = metrics.deletion_curve(f, x, bad, num_steps=4)
  assert curve_g.shape == (5, 1)
  np.testing.assert_allclose(curve_g[0], curve_b[0])  # nothing deleted yet
  np.testing.assert_allclose(curve_g[-1], curve_b[-1])  # everything deleted
  np.testing.assert_allclose(curve_g[-1], 0.5, rtol=1e-6)  # logits tie
  assert float(auc_g[0]) < float(auc_b[0])
  # Padding (-1) entries are not candidates: deleting 2 of 2 deletes both.
  padded = jnp.array([[0, 1, -1, -1]])
  curve_p, _ = metrics.deletion_curve(f, x, padded, num_steps=2)
  np.testing.assert_allclose(curve_p[-1], 0.5, rtol=1e-6)


def test_mask_spread_hand_computed():
  constant = np.full((5, 4, 4, 1), 0.3)
  assert float(metrics.mask_spread(constant)['relative_spread']) == pytest.approx(
      0.0, abs=1e-6)
  m = np.array([[0.2, 0.4], [0.6, 0.4]])  # 2 frames, 2 pixels
  out = metrics.mask_spread(m)
  # std over frames: [0.2, 0.0] -> mean 0.1; overall mean 0.4.
  assert float(out['relative_spread']) == pytest.approx(0.25, rel=1e-5)
  np.testing.assert_allclose(out['std'], [0.2, 0.0], atol=1e-6)
  with pytest.raises(ValueError, match='N >= 2'):
    metrics.mask_spread(np.ones((1, 3)))
