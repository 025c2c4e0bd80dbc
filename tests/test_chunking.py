"""Chunked noise samples: same values and gradients, less memory."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from lanjax import corruption
from lanjax import losses
from lanjax import objective
from lanjax import training


def _conv_f(channels=3, seed=0):
  """A small conv net F: (N, 16, 16, channels) -> (N, 16, 16, channels)."""
  k1, k2 = jax.random.split(jax.random.key(seed))
  w1 = jax.random.normal(k1, (3, 3, channels, 8)) * 0.3
  w2 = jax.random.normal(k2, (3, 3, 8, channels)) * 0.3
  dn = ('NHWC', 'HWIO', 'NHWC')

  def f(x):
    h = jax.nn.leaky_relu(jax.lax.conv_general_dilated(
        x, w1, (2, 2), 'SAME', dimension_numbers=dn), 0.01)
    h = jax.image.resize(h, h.shape[:1] + x.shape[1:3] + h.shape[3:],
                         'nearest')
    return jax.nn.sigmoid(jax.lax.conv_general_dilated(
        h, w2, (1, 1), 'SAME', dimension_numbers=dn))
  return f


def _classifier_f(seed=0):
  w = jax.random.normal(jax.random.key(seed), (4 * 3 * 2, 5))
  return lambda x: jnp.tanh(x.reshape(x.shape[0], -1) @ w) * 3


def _reference_terms(f, x, mask, noise, output_loss):
  """eq. (3) term by term: a Python loop over the K noise samples."""
  target = f(x)
  per_sample = [output_loss(f(corruption.corrupt(x, mask, eta)), target)
                for eta in noise]
  return jnp.mean(jnp.stack(per_sample), 0), mask.reshape(
      mask.shape[0], -1).mean(-1)


def _data(seed=0, k=7, mask_shape=(6, 4, 3, 2)):
  keys = jax.random.split(jax.random.key(seed), 3)
  x = jax.random.normal(keys[0], (6, 4, 3, 2))
  mask = jax.nn.sigmoid(jax.random.normal(keys[1], mask_shape))
  noise = jax.random.normal(keys[2], (k, 6, 4, 3, 2))
  return x, mask, noise


@pytest.mark.parametrize('mask_shape', [(6, 4, 3, 2), (6, 4, 3, 1)])
@pytest.mark.parametrize('loss', [losses.softmax_cross_entropy,
                                  losses.squared_error])
def test_lan_terms_matches_loop_over_samples(mask_shape, loss):
  f = _classifier_f()
  x, mask, noise = _data(mask_shape=mask_shape)
  want = _reference_terms(f, x, mask, noise, loss)
  got = jax.jit(lambda m: objective.lan_terms(f, x, m, noise,
                                              output_loss=loss))(mask)
  np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got[1], want[1], rtol=1e-6)


@pytest.mark.parametrize('chunk_size', [1, 2, 3, 6, 7, 100])
def test_chunked_equals_unchunked_values_and_gradients(chunk_size):
  f = _classifier_f()
  x, mask, noise = _data(k=7)

  def fidelity(m, chunk):
    fid, _ = objective.lan_terms(f, x, m, noise, chunk_size=chunk)
    return fid

  full, full_vjp = jax.vjp(lambda m: fidelity(m, None), mask)
  chunked, chunked_vjp = jax.vjp(lambda m: fidelity(m, chunk_size), mask)
  np.testing.assert_allclose(chunked, full, rtol=1e-6, atol=1e-7)
  # A per-example cotangent: every example's gradient is checked.
  cot = jnp.linspace(0.5, 2.0, x.shape[0])
  np.testing.assert_allclose(chunked_vjp(cot)[0], full_vjp(cot)[0],
                             rtol=1e-5, atol=1e-7)
  # And under jit, through lan_loss.
  g_full = jax.jit(jax.grad(lambda m: objective.lan_loss(
      f, x, m, noise, beta=1.5)))(mask)
  g_chunk = jax.jit(jax.grad(lambda m: objective.lan_loss(
      f, x, m, noise, beta=1.5, chunk_size=chunk_size)))(mask)
  np.testing.assert_allclose(g_chunk, g_full, rtol=1e-5, atol=1e-7)


def test_chunked_gradient_wrt_f_params_matches():
  """Chunking rematerialises F: gradients through F's own weights agree too."""
  x, mask, noise = _data(k=5)
  w = jax.random.normal(jax.random.key(3), (24, 5))

  def loss(w, chunk):
    f = lambda z: z.reshape(z.shape[0], -1) @ w
    return objective.lan_loss(f, x, mask, noise, beta=1.0, chunk_size=chunk)

  np.testing.assert_allclose(jax.grad(loss)(w, 2), jax.grad(loss)(w, None),
                             rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('bad', [0, -1, 1.5])
def test_bad_chunk_size_is_refused(bad):
  x, mask, noise = _data()
  with pytest.raises(ValueError, match='chunk_size must be a positive int'):
    objective.lan_terms(_classifier_f(), x, mask, noise, chunk_size=bad)


def test_f_with_per_batch_output_shape_is_refused():
  x, mask, noise = _data()
  with pytest.raises(ValueError, match='one output per example'):
    objective.lan_terms(lambda z: z[:2].reshape(2, -1), x, mask, noise)


def _temp_bytes(fn, *args):
  compiled = training.jit(fn).lower(*args).compile()
  mem = compiled.memory_analysis()
  if mem is None:
    pytest.skip('this backend gives no memory analysis')
  return mem.temp_size_in_bytes


def test_chunking_lowers_compiled_memory():
  f = _conv_f()
  k, b = 64, 4
  x = jax.random.uniform(jax.random.key(0), (b, 16, 16, 3))
  mask = jnp.full((b, 16, 16, 1), 0.5)
  noise = jax.random.uniform(jax.random.key(1), (k, b, 16, 16, 3))

  def grad(chunk):
    return lambda m, n: jax.grad(lambda m: objective.lan_loss(
        f, x, m, n, beta=1.0, output_loss=losses.squared_error,
        chunk_size=chunk))(m)

  full = _temp_bytes(grad(None), mask, noise)
  by_chunk = {c: _temp_bytes(grad(c), mask, noise) for c in (16, 4)}
  # Activations of all 64 samples vs 16 / 4 of them at once.
  assert by_chunk[16] < full / 2
  assert by_chunk[4] < by_chunk[16]


def test_chunk_size_for_memory_respects_the_budget():
  f = _conv_f()
  k, b = 64, 4
  x = jax.ShapeDtypeStruct((b, 16, 16, 3), jnp.float32)
  per_sample = objective.evaluation_bytes(f, x)
  assert per_sample > 3 * b * 16 * 16 * 3 * 4  # more than the inputs alone
  sizes = [objective.chunk_size_for_memory(f, x, num_samples=k,
                                           max_bytes=per_sample * n)
           for n in (0.5, 1, 5, 20, 64, 1000)]
  assert sizes == [1, 1, 5, 20, None, None]
  with pytest.raises(ValueError, match='max_bytes'):
    objective.chunk_size_for_memory(f, x, num_samples=k, max_bytes=0)

  # The chosen chunk keeps the compiled step's extra memory in the budget.
  budget = 8 * per_sample
  chunk = objective.chunk_size_for_memory(f, x, num_samples=k,
                                          max_bytes=budget)
  mask = jnp.full((b, 16, 16, 1), 0.5)
  noise = jnp.zeros((k, b, 16, 16, 3))
  xs = jnp.zeros(x.shape)
  temp = _temp_bytes(lambda m, n: jax.grad(lambda m: objective.lan_loss(
      f, xs, m, n, beta=1.0, output_loss=losses.squared_error,
      chunk_size=chunk))(m), mask, noise)
  assert temp <= budget


class _Mask(nnx.Module):
  """A tiny LAN: one dense layer to a 16x16x1 mask."""

  def __init__(self):
    self.lin = nnx.Linear(16 * 16 * 3, 16 * 16, rngs=nnx.Rngs(0))

  def __call__(self, x):
    h = self.lin(x.reshape(x.shape[0], -1))
    return jax.nn.sigmoid(h).reshape(x.shape[:3] + (1,))


def test_lan_update_memory_budget_matches_unchunked_step():
  """lan_update(chunk_memory=...) chunks, and takes the unchunked step."""
  from lanjax.noise import BootstrapNoise  # pylint: disable=g-import-not-at-top
  f = _conv_f()
  graphdef, params = nnx.split(_Mask(), nnx.Param)
  tx = optax.sgd(0.1)
  pool = jax.random.uniform(jax.random.key(1), (20, 16, 16, 3))
  data = {'pool': pool, 'f_params': {}, 'noise': BootstrapNoise(pool)}
  batch_fn = lambda d, key: d['pool'][:4]
  spec = jax.ShapeDtypeStruct((4, 16, 16, 3), jnp.float32)
  per_sample = objective.evaluation_bytes(f, spec)
  assert objective.chunk_size_for_memory(
      f, spec, num_samples=16, max_bytes=3 * per_sample) == 3
  results = []
  for memory in (None, 3 * per_sample):
    update = training.lan_update(
        graphdef, tx, lambda p, z: f(z), batch_fn, beta=0.5, num_samples=16,
        output_loss=losses.squared_error, chunk_memory=memory)
    state = training.init_state(params, tx)
    jaxpr = str(jax.make_jaxpr(update)(state, data, jax.random.key(2)))
    assert ('scan' in jaxpr) == (memory is not None)  # the chunk loop
    results.append(jax.jit(update)(state, data, jax.random.key(2)))
  (s0, m0), (s1, m1) = results
  np.testing.assert_allclose(m1['loss'], m0['loss'], rtol=1e-6)
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-5,
                                                       atol=1e-7),
               s1['params'], s0['params'])


@pytest.mark.parametrize('chunk_size', [2, 3])
def test_chunks_without_remat_equal_unchunked(chunk_size):
  f = _classifier_f()
  x, mask, noise = _data(k=7)
  loss = lambda m, c, r: objective.lan_loss(f, x, m, noise, beta=1.0,
                                            chunk_size=c, remat=r)
  np.testing.assert_allclose(loss(mask, chunk_size, False),
                             loss(mask, None, True), rtol=1e-6)
  np.testing.assert_allclose(jax.grad(loss)(mask, chunk_size, False),
                             jax.grad(loss)(mask, None, True), rtol=1e-5,
                             atol=1e-7)


def test_lan_update_tiles_large_batches_on_cpu_only():
  """On CPU, B * K beyond cpu_max_inputs is evaluated in chunks, same step."""
  from lanjax.noise import BootstrapNoise  # pylint: disable=g-import-not-at-top
  f = _conv_f()
  graphdef, params = nnx.split(_Mask(), nnx.Param)
  tx = optax.sgd(0.1)
  pool = jax.random.uniform(jax.random.key(1), (20, 16, 16, 3))
  data = {'pool': pool, 'f_params': {}, 'noise': BootstrapNoise(pool)}
  batch_fn = lambda d, key: d['pool'][:4]
  results = []
  for cap in (None, 8):  # 4 examples x 8 samples = 32 inputs > 8: chunks of 2
    update = training.lan_update(
        graphdef, tx, lambda p, z: f(z), batch_fn, beta=0.5, num_samples=8,
        output_loss=losses.squared_error, cpu_max_inputs=cap)
    state = training.init_state(params, tx)
    jaxpr = str(jax.make_jaxpr(update)(state, data, jax.random.key(2)))
    tiled = cap is not None and jax.default_backend() == 'cpu'
    assert ('scan' in jaxpr) == tiled
    assert ('remat' in jaxpr or 'checkpoint' in jaxpr) is False
    results.append(jax.jit(update)(state, data, jax.random.key(2)))
  (s0, m0), (s1, m1) = results
  np.testing.assert_allclose(m1['loss'], m0['loss'], rtol=1e-6)
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-5,
                                                       atol=1e-7),
               s1['params'], s0['params'])
