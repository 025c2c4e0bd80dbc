"""Behaviour of the pure functions that a wrong implementation breaks.

Companion of test_core.py (hand values) written against the mutants that
survived it (docs/mutation_report.md): broadcasting from the trailing axes,
bootstrap draws independent across examples, losses over middle axes, the
stop-gradient on F(x) with a user's own output loss, the memory estimate,
metrics on hand-built maps (zero mass, negative and near-equal scores) and
deletion with step counts that do not divide the number of components.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lanjax
from lanjax import corruption, losses, metrics, noise, objective
from lanjax.data import translated_mnist as tm_data


# ----------------------------------------------------------------------------
# Corruption.


def test_lower_rank_mask_broadcasts_from_the_trailing_axes():
  # A (3, 4) mask over (2, 3, 4) inputs: aligned on the last axes, as numpy.
  x = jnp.zeros((2, 3, 4))
  mask = jnp.zeros((3, 4)).at[1, 2].set(1.0)
  out = lanjax.corrupt(x, mask, jnp.ones((2, 3, 4)))
  np.testing.assert_array_equal(out[:, 1, 2], [1.0, 1.0])
  assert float(out.sum()) == 2.0
  corruption.check_broadcastable((1, 1, 4), (2, 3, 4))  # ones broadcast
  with pytest.raises(ValueError, match='does not broadcast'):
    corruption.check_broadcastable((4, 3), (2, 3, 4))


def test_each_argument_that_is_not_an_array_is_named():
  x = jnp.zeros((2, 3))
  for args, name in (((x.tolist(), x, x), 'x'), ((x, x.tolist(), x), 'mask'),
                     ((x, x, x.tolist()), 'noise')):
    with pytest.raises(TypeError, match=f'^{name} must be an array'):
      lanjax.corrupt(*args)
  f = lambda z: z
  eta = jnp.zeros((1, 2, 3))
  for args, name in (((x.tolist(), x, eta), 'x'), ((x, x.tolist(), eta), 'mask'),
                     ((x, x, eta.tolist()),
                      r'noise \(K samples per example, see lanjax.noise\)')):
    with pytest.raises(TypeError, match=f'^{name} must be an array'):
      objective.lan_terms(f, *args)


def test_noise_of_another_shape_is_refused():
  with pytest.raises(ValueError, match='noise must have exactly'):
    lanjax.corrupt(jnp.zeros((2, 3)), jnp.zeros((2, 3)), jnp.zeros((2, 1)))


# ----------------------------------------------------------------------------
# Noise.


def test_constant_noise_defaults_to_zero_and_keeps_the_input_dtype():
  x = jnp.ones((2, 3), jnp.float16)
  eta = noise.ConstantNoise().sample(jax.random.key(0), x, 1)
  assert eta.shape == (1, 2, 3) and eta.dtype == jnp.float16
  np.testing.assert_array_equal(eta, 0.0)
  np.testing.assert_array_equal(
      noise.make_noise('constant').sample(jax.random.key(0), x, 2), 0.0)
  np.testing.assert_array_equal(
      noise.make_noise('constant', value=3.0).sample(jax.random.key(0), x, 2),
      3.0)
  with pytest.raises(dataclasses.FrozenInstanceError):
    noise.ConstantNoise(1.0).value = 2.0


def test_gaussian_noise_keeps_the_input_dtype():
  # A float16 batch gets float16 draws, whatever the dtype of mean and std
  # (here float64 scalars, computed with at most float32 by JAX).
  x = jnp.zeros((4, 3), jnp.float16)
  eta = noise.GaussianNoise(np.float64(1.0), np.float64(2.0)).sample(
      jax.random.key(0), x, 2)
  assert eta.shape == (2, 4, 3) and eta.dtype == jnp.float16
  assert float(jnp.std(eta.astype(jnp.float32))) > 1.0  # drawn, not constant


def test_noise_sample_counts_and_a_scalar_input():
  x = jnp.zeros((2, 3))
  for bad in (0, True, 2.5, -1):
    for sampler in (noise.ConstantNoise(), noise.BootstrapNoise(x)):
      with pytest.raises(ValueError, match='number of noise samples K must'):
        sampler.sample(jax.random.key(0), x, bad)
  # Constant noise needs no batch axis: a scalar input gets K scalars.
  eta = noise.ConstantNoise(3.0).sample(jax.random.key(0), jnp.float32(1.0), 2)
  np.testing.assert_array_equal(eta, [3.0, 3.0])
  # Bootstrap noise draws one pool example per batch entry: a scalar input
  # has no batch axis and is refused with a message that says so.
  with pytest.raises(ValueError, match=r'has shape \(\) but needs at least 1 '
                     r'axes \(a batch'):
    noise.BootstrapNoise(jnp.arange(3.0)).sample(jax.random.key(0),
                                                 jnp.float32(1.0), 2)


def test_bootstrap_draws_are_independent_across_examples_and_differ_from_x():
  pool = jnp.arange(1000.0)[:, None]  # 1000 distinct one-component examples
  x = jnp.full((16, 1), -1.0)  # not in the pool
  eta = np.asarray(jax.jit(lambda n, k: n.sample(k, x, 32))(
      noise.BootstrapNoise(pool), jax.random.key(0)))[..., 0]  # (K, B)
  assert not np.any(eta == -1.0)  # never the input itself
  # Two examples share a draw with probability 1/1000: one draw shared by
  # the batch would make every pair equal.
  same = np.mean([np.mean(eta[:, i] == eta[:, j])
                  for i in range(16) for j in range(i + 1, 16)])
  assert same < 0.02
  assert len(np.unique(eta)) > 300  # 512 draws of 1000: ~400 distinct
  # Draws cover the whole pool, its first and last rows included.
  many = np.asarray(noise.BootstrapNoise(pool[:4]).sample(
      jax.random.key(1), jnp.zeros((8, 1)), 64))
  np.testing.assert_array_equal(np.unique(many), [0.0, 1.0, 2.0, 3.0])


def test_bootstrap_one_sample_one_example_pool_and_dtype():
  pool = jnp.full((1, 2), 7.0)  # a pool of one example is valid
  x = jnp.zeros((3, 2), jnp.float16)
  eta = noise.BootstrapNoise(pool).sample(jax.random.key(0), x, 1)
  assert eta.shape == (1, 3, 2) and eta.dtype == jnp.float16
  np.testing.assert_array_equal(eta, 7.0)
  # Scalar examples: a 1-D pool.
  eta = noise.BootstrapNoise(jnp.arange(3.0)).sample(
      jax.random.key(0), jnp.zeros((5,)), np.int64(2))
  assert eta.shape == (2, 5)
  with pytest.raises(ValueError, match='empty'):
    noise.BootstrapNoise([])


def test_bootstrap_transform_is_static_under_jit_and_gets_its_own_key():
  pool = jnp.zeros((10, 2))
  seen = []

  def transform(key, draws):
    seen.append(key)
    return draws + jax.random.uniform(key, draws.shape)

  sampler = noise.make_noise('bootstrap', pool=pool, transform=transform)
  eta = jax.jit(lambda n, k: n.sample(k, jnp.zeros((3, 2)), 4))(
      sampler, jax.random.key(0))
  assert eta.shape == (4, 3, 2) and float(eta.std()) > 0.1
  assert len(seen) == 1
  with pytest.raises(ValueError, match='pool of training inputs'):
    noise.make_noise('bootstrap')


# ----------------------------------------------------------------------------
# Output losses.


def test_losses_average_over_the_axes_between_batch_and_classes():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 3, 4)).astype(np.float32)
  target = rng.normal(size=(2, 3, 4)).astype(np.float32)

  def log_softmax(v):
    v = v - v.max(-1, keepdims=True)
    return v - np.log(np.exp(v).sum(-1, keepdims=True))

  p = np.exp(log_softmax(target))
  expected = -(p * log_softmax(logits)).sum(-1).mean(-1)
  np.testing.assert_allclose(losses.softmax_cross_entropy(logits, target),
                             expected, rtol=1e-5)
  np.testing.assert_allclose(losses.squared_error(logits, target),
                             ((logits - target) ** 2).reshape(2, -1).mean(-1),
                             rtol=1e-6)
  assert losses.get_output_loss('squared_error') is losses.squared_error
  with pytest.raises(ValueError, match='softmax_cross_entropy, squared_error'):
    losses.get_output_loss('hinge')


# ----------------------------------------------------------------------------
# The objective.


def _problem(k=3, b=2, d=4, c=3):
  keys = jax.random.split(jax.random.key(0), 4)
  w = jax.random.normal(keys[0], (d, c))
  f = lambda x: jnp.tanh(x) @ w
  x = jax.random.normal(keys[1], (b, d))
  mask = jax.nn.sigmoid(jax.random.normal(keys[2], (b, d)))
  eta = jax.random.normal(keys[3], (k, b, d))
  return f, x, mask, eta


def _no_stop_gradient_loss(output, target):
  """A user's output loss that does not stop the target's gradient."""
  return jnp.sum(jnp.square(output - target), -1)


def test_custom_output_loss_gets_no_gradient_through_f_of_x():
  f, x, mask, eta = _problem()
  target = f(x)
  loss = lambda x, t: lanjax.lan_loss(f, x, mask, eta, beta=0.5, target=t,
                                      output_loss=_no_stop_gradient_loss)
  g_free = jax.grad(lambda z: loss(z, None))(x)
  g_fixed = jax.grad(lambda z: loss(z, target))(x)
  np.testing.assert_allclose(g_free, g_fixed, rtol=1e-5, atol=1e-6)
  # Not vacuous: the path through F(x) would change the gradient.
  through = lambda z: jnp.mean(jnp.stack([_no_stop_gradient_loss(
      f(mask * e + (1 - mask) * z), f(z)) for e in eta]), 0).mean()
  g_through = jax.grad(through)(x)
  assert not np.allclose(g_through, g_fixed, rtol=1e-3)
  # A target passed in is a constant too.
  g_t = jax.grad(lambda t: loss(x, t))(target)
  np.testing.assert_array_equal(g_t, 0.0)


def test_lan_terms_per_example_with_batch_unlike_samples():
  # B = 3 examples, K = 5 samples: an axis mix-up changes shapes or values.
  f, x, mask, eta = _problem(k=5, b=3)
  target = f(x)
  fidelity_loss, mask_mean = objective.lan_terms(
      f, x, mask, eta, output_loss=_no_stop_gradient_loss)
  expected = np.mean([_no_stop_gradient_loss(
      f(mask * eta[k] + (1 - mask) * x), target) for k in range(5)], 0)
  np.testing.assert_allclose(fidelity_loss, expected, rtol=1e-5)
  np.testing.assert_allclose(mask_mean, mask.mean(-1), rtol=1e-6)
  for chunk in (1, 2, 5):
    got, _ = objective.lan_terms(f, x, mask, eta, chunk_size=chunk,
                                 output_loss=_no_stop_gradient_loss)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_mask_with_one_example_for_a_batch_is_refused():
  f, x, mask, eta = _problem()
  with pytest.raises(ValueError, match='leading batch axis'):
    objective.lan_terms(f, x, mask[:1], eta)
  with pytest.raises(ValueError, match='chunk_size must be'):
    objective.lan_terms(f, x, mask, eta, chunk_size=0)


def test_chunk_loop_and_remat_in_the_traced_program():
  # Values are the same chunked or not; the program must differ as asked.
  f, x, mask, eta = _problem(k=4)

  def jaxpr(**kw):  # the forward pass: jax.checkpoint shows as remat
    loss = lambda m: lanjax.lan_loss(f, x, m, eta, beta=1.0, **kw)
    return str(jax.make_jaxpr(loss)(mask))

  for whole in (jaxpr(), jaxpr(chunk_size=4), jaxpr(chunk_size=9)):
    assert 'scan' not in whole and 'remat' not in whole
  remat = jaxpr(chunk_size=2)  # remat by default, with CSE allowed
  assert 'scan' in remat and 'remat' in remat
  assert 'prevent_cse=False' in remat
  kept = jaxpr(chunk_size=2, remat=False)
  assert 'scan' in kept and 'remat' not in kept
  terms = jax.make_jaxpr(lambda m: objective.lan_terms(
      f, x, m, eta, chunk_size=2))(mask)
  assert 'remat' in str(terms)


def test_evaluation_bytes_counts_values_once_and_doubles_for_backward():
  x = jax.ShapeDtypeStruct((2, 4), jnp.float32)  # 32 bytes
  double = lambda z: z * 2.0  # one value of x's size
  assert objective.evaluation_bytes(double, x) == 2 * 32 + 3 * 32
  # A nested jaxpr (jit inside F) counts its inner values, not its outputs.
  assert objective.evaluation_bytes(jax.jit(double), x) == 160
  two = lambda z: jnp.sin(z) * 2.0
  assert objective.evaluation_bytes(two, x) == 2 * 64 + 3 * 32
  # 160 bytes per sample.
  size = lambda b, k: objective.chunk_size_for_memory(double, x, num_samples=k,
                                                      max_bytes=b)
  assert size(480, 3) is None  # exactly fits
  assert size(480, 4) == 3
  assert size(479, 4) == 2
  assert size(100, 4) == 1  # even one sample does not fit
  with pytest.raises(ValueError, match='max_bytes'):
    size(0, 4)


# ----------------------------------------------------------------------------
# Metrics.


def test_importance_and_zero_mass_fallback():
  np.testing.assert_allclose(metrics.importance(jnp.array([0.0, 0.25, 1.0])),
                             [1.0, 0.75, 0.0])
  region = jnp.zeros((2, 4, 4), bool).at[:, :1, :].set(True)  # area 1/4
  score = jnp.zeros((2, 4, 4)).at[1, 0, 0].set(2.0).at[1, 3, 3].set(6.0)
  np.testing.assert_allclose(metrics.mass_in_region(score, region),
                             [0.25, 0.25])
  score = score.at[1, 0, 1].set(8.0)  # 10 of 16 inside
  np.testing.assert_allclose(metrics.mass_in_region(score, region),
                             [0.25, 10 / 16], rtol=1e-6)
  # Less than unit mass in total is a share of that total.
  small = jnp.zeros((1, 4, 4)).at[0, 0, 0].set(0.125).at[0, 3, 3].set(0.375)
  np.testing.assert_allclose(metrics.mass_in_region(small, region[:1]),
                             [0.25], rtol=1e-6)


def test_pointing_game_negative_and_close_scores():
  region = jnp.array([[False, True, False], [False, True, False],
                      [True, False, False], [False, False, True]])
  score = jnp.array([
      [-3.0, -1.0, -2.0],             # negative scores: max -1 is inside
      [-1.0, -1.0 + 1e-5, -5.0],      # near-tie outside rtol: inside wins
      [1.0, 1.0 + 2 ** -20, 1.0],     # tiny range: still one maximum
      [-2.0, -2.0, -2.0],             # constant negative map: area share
  ])
  np.testing.assert_allclose(metrics.pointing_game(score, region),
                             [1.0, 1.0, 0.0, 1 / 3], rtol=1e-6)
  # Within rtol the two maxima tie: half a hit.
  np.testing.assert_allclose(
      metrics.pointing_game(score[1:2], region[1:2], rtol=0.5), [0.5])


def test_agreement_is_per_example_over_classes():
  logits = jnp.array([[0.0, 1.0, 0.0], [2.0, 0.0, 1.0]])
  ref = jnp.array([[0.0, 3.0, 1.0], [0.0, 0.0, 1.0]])
  np.testing.assert_array_equal(metrics.agreement(logits, ref), [1.0, 0.0])


def test_permuted_keeps_each_examples_values_not_their_places():
  maps = jnp.arange(36.0).reshape(3, 3, 4)  # distinct values per example
  out = np.asarray(metrics.permuted(jax.random.key(0), maps))
  assert out.shape == (3, 3, 4)
  # Each example keeps its own values (the same amount of corruption) ...
  np.testing.assert_array_equal(np.sort(out.reshape(3, -1), -1),
                                np.asarray(maps).reshape(3, -1))
  # ... in other places, with a permutation of its own.
  assert np.mean(out == np.asarray(maps)) < 0.5
  assert not np.array_equal(np.argsort(out[0].ravel()),
                            np.argsort(out[1].ravel()))


def _weighted_f(w):
  """Class-1 logit ``x @ w``, class-0 logit 0."""
  return lambda x: jnp.stack([jnp.zeros(x.shape[0]), x @ w], -1)


def _sigmoid(v):
  return 1 / (1 + np.exp(-np.asarray(v, np.float64)))


def test_deletion_curve_with_uneven_step_counts_and_padding():
  w = jnp.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0]) / 16
  f = _weighted_f(w)
  x = jnp.ones((2, 6))
  # Example 0: 5 candidates (component 5 is not one); example 1: 2.
  order = jnp.array([[4, 0, 3, 1, 2, -1], [5, 2, -1, -1, -1, -1]])
  curve, auc = metrics.deletion_curve(f, x, order, num_steps=3,
                                      baseline=0.5)
  # Deleted counts per step: round(t / 3 * n): n=5 -> 0, 2, 3, 5 (1.67 -> 2,
  # 3.33 -> 3); n=2 -> 0, 1, 1, 2 (0.67 -> 1, 1.33 -> 1).
  wn = np.asarray(w)
  def p(deleted):
    v = np.ones(6)
    v[list(deleted)] = 0.5
    return _sigmoid(v @ wn)
  expected = np.array([
      [p([]), p([4, 0]), p([4, 0, 3]), p([4, 0, 3, 1, 2])],
      [p([]), p([5]), p([5]), p([5, 2])]]).T
  np.testing.assert_allclose(curve, expected, rtol=1e-5)
  # Trapezoid rule over the fraction deleted.
  trapz = ((expected[1:] + expected[:-1]) / 2).sum(0) / 3
  np.testing.assert_allclose(auc, trapz, rtol=1e-5)
  # Tracking another class: class 0's probability is 1 - class 1's.
  curve0, _ = metrics.deletion_curve(f, x, order, num_steps=3, baseline=0.5,
                                     classes=jnp.array([0, 0]))
  np.testing.assert_allclose(curve0, 1 - expected, rtol=1e-5)


def test_deletion_curve_default_class_is_the_clean_prediction():
  f = _weighted_f(jnp.array([-1.0, -1.0]))  # predicts class 0 on ones
  curve, _ = metrics.deletion_curve(f, jnp.ones((1, 2)), jnp.array([[1, 0]]),
                                    num_steps=2)
  np.testing.assert_allclose(curve[:, 0], 1 - _sigmoid([-2.0, -1.0, 0.0]),
                             rtol=1e-5)
  # Per example: two examples predicted as different classes, each tracked.
  f = _weighted_f(jnp.array([1.0, 1.0]))
  x = jnp.array([[1.0, 1.0], [-2.0, -1.0]])  # class 1 (p = s(2)); class 0
  curve, _ = metrics.deletion_curve(f, x, jnp.array([[1, 0], [1, 0]]),
                                    num_steps=2)
  np.testing.assert_allclose(curve[:, 0], _sigmoid([2.0, 1.0, 0.0]),
                             rtol=1e-5)
  np.testing.assert_allclose(curve[:, 1], 1 - _sigmoid([-3.0, -2.0, 0.0]),
                             rtol=1e-5)


# ----------------------------------------------------------------------------
# Data.


def test_resize_digits_keeps_rows_as_rows():
  digit = np.zeros((1, 28, 28, 1), np.float32)
  digit[0, :7, :, 0] = 1.0  # a bar across the top quarter
  small = np.asarray(tm_data.resize_digits(digit, 12))
  assert small.shape == (1, 12, 12)
  assert small[0, :2].min() > 0.9 and small[0, 5:].max() < 0.1
  np.testing.assert_allclose(small[0, :, 0], small[0, :, 11], atol=1e-6)
  assert math.isclose(float(small.max()), 1.0, abs_tol=1e-6)
