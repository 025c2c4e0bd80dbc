"""Behaviour of the training steps that a wrong implementation breaks.

`apply_gradients`, `classifier_update` and `lan_update` checked against the
objective computed independently (one exact step), against what training
must learn (a tiny LAN run whose mask rises with beta and stays low where F
reads), and for the keys and chunks they use. The jitted updates are run
directly, without `fit` (no checkpoints), to keep this file fast.
"""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from lanjax import losses, noise as noise_lib, objective, training

D = 8  # input components; F reads only the first two


class _Mask(nnx.Module):
  """A(x) = sigmoid(theta), one logit per component, the same for all x."""

  def __init__(self, d=D, init=0.0):
    self.theta = nnx.Param(jnp.full((d,), init))

  def __call__(self, x):
    return jnp.broadcast_to(jax.nn.sigmoid(self.theta[...]), x.shape)


def _f_apply(p, x):
  """F reads components 0 and 1 only: logits ``(B, 4)``."""
  return 3.0 * x[:, :2] @ p['w']


def _f_params():
  return {'w': jax.random.normal(jax.random.key(0), (2, 4))}


def _pool(n=64):
  return jax.random.normal(jax.random.key(1), (n, D))


def _tree_close(a, b, **kw):
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, **kw), a, b)


# ----------------------------------------------------------------------------
# apply_gradients.


def test_apply_gradients_skips_non_finite_loss_or_any_leaf_and_counts_steps():
  params = {'a': jnp.ones(2), 'b': jnp.ones(3)}
  tx = optax.adam(0.1)
  state = training.init_state(params, tx)
  good = {'a': jnp.ones(2), 'b': jnp.ones(3)}
  new, finite = training.apply_gradients(state, good, jnp.float32(2.0), tx)
  assert float(finite) == 1.0 and int(new['step']) == 1
  updates, opt_state = tx.update(good, state['opt_state'], params)
  _tree_close(new['params'], optax.apply_updates(params, updates), rtol=1e-6)
  _tree_close(new['opt_state'], opt_state, rtol=1e-6)
  # Optimisers that read the parameters (weight decay) get them.
  adamw = optax.adamw(0.1, weight_decay=0.5)
  decayed, _ = training.apply_gradients(training.init_state(params, adamw),
                                        good, jnp.float32(2.0), adamw)
  updates, _ = adamw.update(good, adamw.init(params), params)
  _tree_close(decayed['params'], optax.apply_updates(params, updates),
              rtol=1e-6)
  for loss, grads in ((jnp.float32(jnp.nan), good),  # finite grads, NaN loss
                      (jnp.float32(jnp.inf), good),
                      (jnp.float32(1.0), {**good, 'b': good['b'].at[1].set(
                          jnp.inf)})):  # one bad leaf among finite ones
    skipped, finite = training.apply_gradients(new, grads, loss, tx)
    assert float(finite) == 0.0
    assert int(skipped['step']) == 2  # the step is counted all the same
    _tree_close(skipped['params'], new['params'], rtol=0)
    _tree_close(skipped['opt_state'], new['opt_state'], rtol=0)


# ----------------------------------------------------------------------------
# classifier_update.


def _classifier_data(n=64):
  x = jax.random.normal(jax.random.key(3), (n, 4))
  y = jnp.argmax(x @ jax.random.normal(jax.random.key(4), (4, 3)), -1)
  return {'x': x, 'y': y}


def test_classifier_update_one_exact_step_then_learns():
  model = nnx.Linear(4, 3, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model, nnx.Param)
  tx = optax.sgd(0.5)
  data = _classifier_data()
  full_batch = lambda d, key: {'x': d['x'], 'y': d['y']}
  update = jax.jit(training.classifier_update(graphdef, tx, full_batch))
  state = training.init_state(params, tx)

  def loss_of(p):
    logits = nnx.merge(graphdef, p)(data['x'])
    return optax.softmax_cross_entropy_with_integer_labels(
        logits, data['y']).mean(), logits

  (loss0, logits0), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
  new, m = update(state, data, jax.random.key(5))
  np.testing.assert_allclose(m['loss'], loss0, rtol=1e-5)
  np.testing.assert_allclose(
      m['accuracy'], np.mean(np.argmax(logits0, -1) == data['y']), rtol=1e-6)
  np.testing.assert_allclose(m['grad_norm'], optax.tree.norm(grads),
                             rtol=1e-5)
  assert float(m['finite']) == 1.0 and int(new['step']) == 1
  _tree_close(new['params'],
              jax.tree.map(lambda p, g: p - 0.5 * g, params, grads),
              rtol=1e-5, atol=1e-6)
  for step in range(60):
    new, m = update(new, data, jax.random.key(step))
  assert float(m['loss']) < 0.5 * float(loss0)
  assert float(m['accuracy']) > 0.9
  # The accuracy metric is that of the logits the loss was computed from.
  logits = nnx.merge(graphdef, jax.tree.map(
      lambda p, g: p, new['params'], new['params']))(data['x'])
  assert abs(float(np.mean(np.argmax(logits, -1) == data['y']))
             - float(m['accuracy'])) < 0.1


def test_classifier_update_gives_forward_its_own_key():
  graphdef, params = nnx.split(nnx.Linear(4, 3, rngs=nnx.Rngs(0)), nnx.Param)
  tx = optax.sgd(0.1)
  keys = {}

  def batch_fn(d, key):
    keys['data'] = key
    return {'x': d['x'], 'y': d['y']}

  def forward(model, x, key):
    keys['model'] = key
    return 0.0 * model(x)  # a forward that is not model(x)

  update = training.classifier_update(graphdef, tx, batch_fn, forward=forward)
  _, m = update(training.init_state(params, tx), _classifier_data(),
                jax.random.key(0))  # eager: the keys are concrete
  data_bits = jax.random.key_data(keys['data'])
  assert not np.array_equal(data_bits, jax.random.key_data(keys['model']))
  np.testing.assert_allclose(m['loss'], np.log(3.0), rtol=1e-6)


# ----------------------------------------------------------------------------
# lan_update.


def test_lan_update_one_exact_step_against_the_objective():
  # Constant noise and a batch that ignores its key: the step is a function
  # of the state alone, computed here independently with lan_loss.
  graphdef, params = nnx.split(_Mask(init=0.3), nnx.Param)
  params = jax.tree.map(lambda t: t + jnp.linspace(-1, 1, D), params)
  tx = optax.sgd(0.5)
  x = _pool(6)
  f_params = _f_params()
  data = {'x': x, 'f_params': f_params, 'noise': noise_lib.ConstantNoise(0.5)}
  beta = 0.7
  for output_loss in (losses.softmax_cross_entropy, losses.squared_error):
    update = training.lan_update(graphdef, tx, _f_apply,
                                 lambda d, key: d['x'], beta=beta,
                                 num_samples=3, output_loss=output_loss)
    new, m = jax.jit(update)(training.init_state(params, tx), data,
                             jax.random.key(0))
    f = lambda z: _f_apply(f_params, z)
    eta = jnp.full((3,) + x.shape, 0.5)

    def loss_of(p):
      mask = nnx.merge(graphdef, p)(x)
      return objective.lan_loss(f, x, mask, eta, beta=beta,
                                output_loss=output_loss)

    loss, grads = jax.value_and_grad(loss_of)(params)
    mask = nnx.merge(graphdef, params)(x)
    fidelity_loss, mask_mean = objective.lan_terms(f, x, mask, eta,
                                             output_loss=output_loss)
    np.testing.assert_allclose(m['loss'], loss, rtol=1e-5)
    np.testing.assert_allclose(m['loss'], fidelity_loss.mean()
                               - beta * mask_mean.mean(), rtol=1e-5)
    np.testing.assert_allclose(m["fidelity_loss"], fidelity_loss.mean(), rtol=1e-5)
    np.testing.assert_allclose(m['mask_mean'], mask_mean.mean(), rtol=1e-6)
    np.testing.assert_allclose(m['grad_norm'], optax.tree.norm(grads),
                               rtol=1e-5)
    assert float(m['finite']) == 1.0 and int(new['step']) == 1
    _tree_close(new['params'],
                jax.tree.map(lambda p, g: p - 0.5 * g, params, grads),
                rtol=1e-5, atol=1e-7)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _RecordingNoise:
  """Bootstrap noise that records the key it is sampled with (eagerly)."""
  pool: jax.Array
  seen: list = dataclasses.field(metadata=dict(static=True))

  def sample(self, key, x, num_samples):
    eta = noise_lib.BootstrapNoise(self.pool).sample(key, x, num_samples)
    self.seen.append((key, x, eta))
    return eta


def _key_bits(key):
  return np.asarray(jax.random.key_data(key))


def test_lan_update_draws_noise_with_its_own_key():
  graphdef, params = nnx.split(_Mask(), nnx.Param)
  tx = optax.sgd(0.1)
  pool = _pool()
  batch_keys, seen = [], []

  def batch_fn(d, key):
    batch_keys.append(key)
    return d['pool'][jax.random.randint(key, (16,), 0, d['pool'].shape[0])]

  data = {'pool': pool, 'f_params': _f_params(),
          'noise': _RecordingNoise(pool, seen)}
  update = training.lan_update(graphdef, tx, _f_apply, batch_fn, beta=1.0,
                               num_samples=4)
  for step in range(2):
    update(training.init_state(params, tx), data,
           jax.random.fold_in(jax.random.key(0), step))  # eager
  assert len(seen) == 2 and len(batch_keys) == 2
  for (noise_key, x, eta), batch_key in zip(seen, batch_keys):
    assert not np.array_equal(_key_bits(noise_key), _key_bits(batch_key))
    eta, x = np.asarray(eta), np.asarray(x)
    assert eta.shape == (4,) + x.shape
    # No noise sample is the batch itself, and examples get their own draws.
    for k in range(4):
      assert not np.array_equal(eta[k], x)
    assert len({eta[0, i].tobytes() for i in range(16)}) > 8
  # Another step, other noise.
  assert not np.array_equal(seen[0][2], seen[1][2])


@jax.jit
def _lan_step(state, data, key, beta):
  """One LAN step with beta traced: one compilation for every beta."""
  batch_fn = lambda d, key: d['pool'][jax.random.randint(key, (32,), 0, 256)]
  graphdef = nnx.graphdef(_Mask())
  return training.lan_update(graphdef, optax.adam(0.1), _f_apply, batch_fn,
                             beta=beta, num_samples=4)(state, data, key)


def _train_lan(beta, steps=60):
  params = nnx.state(_Mask(), nnx.Param)
  pool = _pool(256)
  data = {'pool': pool, 'f_params': _f_params(),
          'noise': noise_lib.BootstrapNoise(pool)}
  state = training.init_state(params, optax.adam(0.1))
  for step in range(steps):
    state, m = _lan_step(state, data,
                         jax.random.fold_in(jax.random.key(0), step),
                         jnp.float32(beta))
  return np.asarray(jax.nn.sigmoid(state['params']['theta'][...])), m


def test_lan_training_masks_what_f_ignores_and_rises_with_beta():
  low, m_low = _train_lan(beta=0.05)
  high, m_high = _train_lan(beta=20.0)
  # Small beta: the two components F reads stay uncorrupted, the rest is
  # corrupted (importance 1 - A(x) is high exactly where F reads).
  assert low[:2].max() < 0.2, low
  assert low[2:].min() > 0.8, low
  # Large beta: the reward for corrupting wins, even where F reads.
  assert high[2:].min() > 0.8, high
  assert high[:2].min() > low[:2].max() + 0.25, (low, high)
  assert float(m_high['mask_mean']) > float(m_low['mask_mean']) + 0.15
  np.testing.assert_allclose(m_low['mask_mean'], low.mean(), atol=0.02)


def _scan_lengths(update, data, params, tx):
  jaxpr = str(jax.make_jaxpr(update)(training.init_state(params, tx), data,
                                     jax.random.key(0)))
  # One length per chunk loop (its forward and transposed scans).
  return (sorted({int(n) for n in re.findall(r'length=(\d+)', jaxpr)}),
          'checkpoint' in jaxpr or 'remat' in jaxpr)


@pytest.mark.skipif(jax.default_backend() != 'cpu', reason='CPU tiling')
def test_lan_update_chunks_as_configured():
  graphdef, params = nnx.split(_Mask(), nnx.Param)
  tx = optax.sgd(0.1)
  pool = _pool()
  data = {'pool': pool, 'f_params': _f_params(),
          'noise': noise_lib.BootstrapNoise(pool)}
  batch_fn = lambda d, key: d['pool'][:4]  # B = 4
  build = lambda **kw: training.lan_update(graphdef, tx, _f_apply, batch_fn,
                                           beta=1.0, num_samples=8, **kw)
  lengths = lambda **kw: _scan_lengths(build(**kw), data, params, tx)
  # B * K = 32 inputs: tiled in chunks of cap // B samples, no remat.
  assert lengths(cpu_max_inputs=8) == ([4], False)
  assert lengths(cpu_max_inputs=12) == ([2], False)  # chunks of 3, tail of 2
  assert lengths(cpu_max_inputs=32) == ([], False)  # fits: not tiled
  assert lengths(cpu_max_inputs=31) == ([1], False)  # chunk of 7, tail of 1
  assert lengths(cpu_max_inputs=2) == ([8], False)  # at least one sample
  assert lengths(cpu_max_inputs=None) == ([], False)
  assert lengths() == ([], False)  # default cap 64: 4 x 8 fits
  # The default cap is 64 inputs: 8 x 8 fits; 128 x 8 is evaluated one noise
  # sample at a time (8 chunks); 21 x 5 = 105 in a chunk of 64 // 21 = 3
  # samples and a tail of 2.
  for b, k, expected in ((8, 8, []), (128, 8, [8]), (21, 5, [1])):
    update = training.lan_update(graphdef, tx, _f_apply,
                                 lambda d, key: d['pool'], beta=1.0,
                                 num_samples=k)
    assert _scan_lengths(update, {**data, 'pool': _pool(b)}, params,
                         tx) == (expected, False)
  # An explicit chunk size or memory budget: remat, and no tiling on top.
  assert lengths(chunk_size=2, cpu_max_inputs=8) == ([4], True)
  f = lambda z: _f_apply(data['f_params'], z)
  per_sample = objective.evaluation_bytes(
      f, jax.ShapeDtypeStruct((4, D), jnp.float32))
  assert lengths(chunk_memory=3 * per_sample) == ([2], True)
  assert lengths(chunk_memory=8 * per_sample) == ([], False)
