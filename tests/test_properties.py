"""Property-based tests (hypothesis) of the pure functions.

* A's masks lie in [0, 1], even for extreme inputs;
* x~ lies between x and eta elementwise; mask 0 gives x and mask 1 gives eta;
* the objective and its gradients are finite for extreme logits and for
  masks of exactly 0 and 1;
* per-example results do not depend on how the batch is split.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import lanjax
from lanjax import losses
from lanjax.models import LatentAttentionNetwork

SETTINGS = settings(max_examples=30, deadline=None)

_f32 = functools.partial(st.floats, width=32, allow_nan=False,
                         allow_infinity=False)


def _arrays(shape, lo=-1e3, hi=1e3):
  """float32 arrays of ``shape`` with values in about ``[lo, hi]``."""
  return hnp.arrays(np.float32, shape, elements=_f32(
      min_value=float(np.float32(lo)), max_value=float(np.float32(hi))))


# A few shapes only: every new shape is a new compilation.
_SHAPES = st.sampled_from([(5,), (2, 3), (2, 2, 3)])


# ----------------------------------------------------------------------------
# Masks.


@functools.lru_cache(maxsize=None)
def _lan(seed):
  return LatentAttentionNetwork((3, 2), (5,), rngs=nnx.Rngs(seed))


@functools.lru_cache(maxsize=None)
def _lan_fn(seed):
  graphdef, state = nnx.split(_lan(seed))
  return jax.jit(lambda x: nnx.merge(graphdef, state)(x))


@SETTINGS
@given(x=_arrays((4, 3, 2), -1e30, 1e30), seed=st.integers(0, 3))
def test_lan_masks_lie_in_unit_interval_for_extreme_inputs(x, seed):
  mask = np.asarray(_lan_fn(seed)(jnp.asarray(x)))
  assert mask.shape == (4, 3, 2)
  assert np.all(np.isfinite(mask))
  assert np.all((mask >= 0.) & (mask <= 1.))


@SETTINGS
@given(shape=_SHAPES, data=st.data())
def test_corruption_lies_between_input_and_noise(shape, data):
  x = data.draw(_arrays(shape))
  eta = data.draw(_arrays(shape))
  mask = data.draw(hnp.arrays(np.float32, shape,
                              elements=_f32(min_value=0., max_value=1.)))
  out = np.asarray(lanjax.corrupt(x, mask, eta))
  lo, hi = np.minimum(x, eta), np.maximum(x, eta)
  tol = 4 * np.finfo(np.float32).eps * (np.abs(x) + np.abs(eta))  # rounding
  assert np.all(out >= lo - tol) and np.all(out <= hi + tol)


@SETTINGS
@given(shape=_SHAPES, data=st.data())
def test_mask_zero_gives_input_and_mask_one_gives_noise(shape, data):
  x = data.draw(_arrays(shape, -1e30, 1e30))
  eta = data.draw(_arrays(shape, -1e30, 1e30))
  corrupt = lanjax.corrupt
  np.testing.assert_array_equal(corrupt(x, np.zeros(shape, np.float32), eta), x)
  np.testing.assert_array_equal(corrupt(x, np.ones(shape, np.float32), eta), eta)


@SETTINGS
@given(data=st.data())
def test_binary_mask_selects_elementwise(data):
  x = data.draw(_arrays((6,)))
  eta = data.draw(_arrays((6,)))
  keep = data.draw(hnp.arrays(np.bool_, (6,)))
  out = lanjax.corrupt(x, keep.astype(np.float32), eta)
  np.testing.assert_array_equal(out, np.where(keep, eta, x))


# ----------------------------------------------------------------------------
# The objective at the extremes.

_W = np.asarray(jax.random.normal(jax.random.key(0), (4, 3)))


def _extreme_f(scale):
  """A linear F whose logits reach about +-scale."""
  return lambda z: scale * jnp.tanh(z @ _W)


@functools.lru_cache(maxsize=None)
def _objective_and_grads(loss_name):
  """Jitted once: ``(mask, x, noise, beta, scale) -> (loss, (dmask, dx))``."""
  def loss_fn(mask, x, noise, beta, scale):
    return lanjax.lan_loss(_extreme_f(scale), x, mask, noise, beta=beta,
                           output_loss=losses.get_output_loss(loss_name))
  return jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1)))


def _mask_values():
  # Exactly 0 and 1 often, anything in between otherwise.
  return st.one_of(st.sampled_from([0., 1.]), _f32(min_value=0., max_value=1.))


@SETTINGS
@given(data=st.data(), scale=st.sampled_from([1e4, -1e4, 1.]),
       loss_name=st.sampled_from(['softmax_cross_entropy', 'squared_error']),
       beta=st.sampled_from([1e-3, 1., 1e3]))
def test_objective_and_gradient_finite_at_extremes(data, scale, loss_name,
                                                   beta):
  x = data.draw(_arrays((3, 4), -10., 10.))
  mask = data.draw(hnp.arrays(np.float32, (3, 4), elements=_mask_values()))
  noise = data.draw(_arrays((2, 3, 4), -10., 10.))
  value, (g_mask, g_x) = _objective_and_grads(loss_name)(
      mask, x, noise, np.float32(beta), np.float32(scale))
  assert np.isfinite(value)
  assert np.all(np.isfinite(g_mask)) and np.all(np.isfinite(g_x))


@SETTINGS
@given(logits=_arrays((3, 5), -1e4, 1e4), target=_arrays((3, 5), -1e4, 1e4))
def test_cross_entropy_finite_and_nonnegative_for_extreme_logits(logits,
                                                                 target):
  ce, grad = jax.value_and_grad(
      lambda l: losses.softmax_cross_entropy(l, target).sum())(logits)
  per_example = losses.softmax_cross_entropy(logits, target)
  assert np.isfinite(ce) and np.all(np.isfinite(grad))
  assert np.all(np.asarray(per_example) >= -1e-3)  # entropy >= 0


@functools.lru_cache(maxsize=None)
def _lan_objective_and_grads(graphdef):
  w = jnp.asarray(np.resize(_W, (6, 3)))

  def loss_fn(params, x, scale):
    f = lambda z: scale * jnp.tanh(z.reshape(z.shape[0], -1) @ w)
    mask = nnx.merge(graphdef, params)(x)
    return lanjax.lan_loss(f, x, mask, jnp.zeros((2,) + x.shape), beta=5.)

  return jax.jit(jax.value_and_grad(loss_fn))


@SETTINGS
@given(x=_arrays((4, 3, 2), -1e3, 1e3), seed=st.integers(0, 3),
       scale=st.sampled_from([1e4, -1e4]))
def test_lan_parameter_gradients_finite_with_saturated_masks(x, seed, scale):
  graphdef, params = nnx.split(_lan(seed), nnx.Param)
  value, grads = _lan_objective_and_grads(graphdef)(params, x,
                                                    np.float32(scale))
  assert np.isfinite(value)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


# ----------------------------------------------------------------------------
# Independence of the examples of a batch.


@functools.lru_cache(maxsize=None)
def _per_example_loss(chunk):
  return jax.jit(lambda x, m, n: lanjax.lan_loss(
      _extreme_f(3.), x, m, n, beta=2., reduction='none', chunk_size=chunk))


@SETTINGS
@given(data=st.data(), split=st.integers(1, 5), chunk=st.sampled_from([None, 1]))
def test_per_example_loss_does_not_depend_on_batch_split(data, split, chunk):
  x = data.draw(_arrays((6, 4), -5., 5.))
  mask = data.draw(hnp.arrays(np.float32, (6, 4), elements=_mask_values()))
  noise = data.draw(_arrays((3, 6, 4), -5., 5.))
  f = _extreme_f(3.)
  per_example = _per_example_loss(chunk)
  whole = per_example(x, mask, noise)
  parts = jnp.concatenate([
      per_example(x[:split], mask[:split], noise[:, :split]),
      per_example(x[split:], mask[split:], noise[:, split:])])
  np.testing.assert_allclose(whole, parts, rtol=1e-5, atol=1e-5)
  # And the mean is the mean of the per-example values.
  np.testing.assert_allclose(
      lanjax.lan_loss(f, x, mask, noise, beta=2.), whole.mean(), rtol=1e-5,
      atol=1e-5)


@SETTINGS
@given(data=st.data(), i=st.integers(0, 5))
def test_changing_one_example_changes_only_its_loss(data, i):
  x = data.draw(_arrays((6, 4), -5., 5.))
  x2 = x.copy()
  x2[i] = data.draw(_arrays((4,), -5., 5.))
  mask = np.full((6, 4), 0.5, np.float32)
  noise = np.zeros((2, 6, 4), np.float32)
  f = _extreme_f(3.)
  a = lanjax.lan_loss(f, x, mask, noise, beta=1., reduction='none')
  b = lanjax.lan_loss(f, x2, mask, noise, beta=1., reduction='none')
  others = np.arange(6) != i
  np.testing.assert_allclose(np.asarray(a)[others], np.asarray(b)[others],
                             rtol=1e-6, atol=1e-6)


@SETTINGS
@given(x=_arrays((5, 3, 2), -1e3, 1e3), split=st.integers(1, 4))
def test_lan_mask_does_not_depend_on_batch_split(x, split):
  a = _lan_fn(0)
  whole = a(x)
  parts = jnp.concatenate([a(x[:split]), a(x[split:])])
  np.testing.assert_allclose(whole, parts, rtol=1e-5, atol=1e-6)


@SETTINGS
@given(data=st.data(), k=st.sampled_from([1, 3]), split=st.sampled_from([1, 2]))
def test_noise_sampling_shapes_and_values(data, k, split):
  pool = data.draw(_arrays((4, 3)))
  x = np.zeros((split, 3), np.float32)
  eta = lanjax.BootstrapNoise(pool).sample(jax.random.key(0), x, k)
  assert eta.shape == (k, split, 3)
  # Every draw is one of the pool's examples.
  matches = (np.asarray(eta)[:, :, None, :] == pool[None, None]).all(-1)
  assert matches.any(-1).all()
  c = lanjax.ConstantNoise(2.).sample(jax.random.key(0), x, k)
  np.testing.assert_array_equal(c, np.full((k, split, 3), 2.))
