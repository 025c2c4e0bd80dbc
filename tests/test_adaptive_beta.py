"""beta without guesswork: lan_update adapts beta to a fidelity budget."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import lanjax
from lanjax import training
from lanjax.models import LatentAttentionNetwork

D = 32


def _setup():
  # Every input matters, some more than others: corrupting more of them
  # costs more fidelity, so the budget sets how much A may corrupt.
  scale = jnp.exp(-jnp.arange(D) / 6.0)[:, None]
  w = jax.random.normal(jax.random.key(0), (D, 5)) * scale
  f_apply = lambda p, x: 2.0 * x @ p  # logits (B, 5)
  pool = jax.random.normal(jax.random.key(1), (512, D))
  a = LatentAttentionNetwork((D,), (16,), rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(a, nnx.Param)
  data = {'x': pool, 'f_params': w, 'noise': lanjax.BootstrapNoise(pool)}
  batch_fn = lambda d, key: d['x'][jax.random.randint(key, (64,), 0, 512)]
  return graphdef, params, f_apply, batch_fn, data


def _train(budget, *, steps=600, beta=1.0):
  graphdef, params, f_apply, batch_fn, data = _setup()
  tx = optax.adam(1e-2)
  update = training.lan_update(
      graphdef, tx, f_apply, batch_fn, beta=beta, num_samples=4,
      fidelity_budget=budget, beta_learning_rate=0.02)
  state = training.init_state(params, tx, beta=beta)
  keys = jax.vmap(jax.random.key)(jnp.arange(steps))
  _, metrics = jax.jit(lambda s: jax.lax.scan(
      lambda s, k: update(s, data, k), s, keys))(state)
  metrics = jax.device_get(metrics)
  history = [{k: v[i] for k, v in metrics.items()} for i in range(steps)]
  tail = history[-200:]
  mean = lambda k: float(np.mean([h[k] for h in tail]))
  return mean('fidelity_excess'), mean('mask_mean'), mean('beta'), history


def test_fidelity_loss_settles_at_the_budget_and_beta_is_logged():
  loose, tight = 0.1, 0.01
  lf_loose, mask_loose, beta_loose, hist = _train(loose)
  lf_tight, mask_tight, beta_tight, _ = _train(tight)
  # The mean excess of L_F over its uncorrupted value (here the KL
  # divergence of the predictions) tracks its budget, within a factor of 2.
  assert loose / 2 < lf_loose < loose * 2, lf_loose
  assert tight / 2.5 < lf_tight < tight * 2.5, lf_tight
  # A looser budget buys a larger mask (more corruption) at a larger beta.
  assert mask_loose > mask_tight + 0.05, (mask_loose, mask_tight)
  assert beta_loose > beta_tight
  assert 'beta' in hist[0] and hist[0]['beta'] == pytest.approx(1.0)
  assert hist[-1]['beta'] != pytest.approx(1.0)


def test_fixed_beta_is_the_default_and_needs_no_state_entry():
  graphdef, params, f_apply, batch_fn, data = _setup()
  tx = optax.adam(1e-2)
  update = training.lan_update(graphdef, tx, f_apply, batch_fn, beta=1.0,
                               num_samples=2)
  state, m = update(training.init_state(params, tx), data, jax.random.key(0))
  assert 'beta' not in m and 'log_beta' not in state


def test_budget_needs_log_beta_in_the_state_and_a_positive_value():
  graphdef, params, f_apply, batch_fn, data = _setup()
  tx = optax.adam(1e-2)
  with pytest.raises(ValueError, match='fidelity_budget must be > 0'):
    training.lan_update(graphdef, tx, f_apply, batch_fn, beta=1.0,
                        num_samples=2, fidelity_budget=-1.0)
  with pytest.raises(ValueError, match='fidelity_budget must be > 0'):
    training.lan_update(graphdef, tx, f_apply, batch_fn, beta=1.0,
                        num_samples=2, fidelity_budget=0.0)
  update = training.lan_update(graphdef, tx, f_apply, batch_fn, beta=1.0,
                               num_samples=2, fidelity_budget=0.1)
  with pytest.raises(ValueError, match="init_state.*beta="):
    update(training.init_state(params, tx), data, jax.random.key(0))


def test_log_beta_moves_at_most_eta_within_bounds_and_not_on_bad_steps():
  graphdef, params, f_apply, batch_fn, data = _setup()
  tx = optax.sgd(0.0)
  eta = 0.02

  updates = {}

  def step(log_beta, *, output_loss=lanjax.softmax_cross_entropy, f=f_apply):
    if (output_loss, f) not in updates:
      updates[output_loss, f] = jax.jit(training.lan_update(
          graphdef, tx, f, batch_fn, beta=1.0, num_samples=2,
          output_loss=output_loss, fidelity_budget=1e-6,
          beta_learning_rate=eta))
    state = training.init_state(params, tx, beta=1.0)
    state['log_beta'] = jnp.float32(log_beta)
    state, _ = updates[output_loss, f](state, data, jax.random.key(0))
    return float(state['log_beta'])

  # A loss below its uncorrupted value (a negative excess) puts the
  # budget's ratio far above 1: clipped to 1, log beta rises by eta exactly.
  negative = lambda out, target: -lanjax.squared_error(out, target)
  assert step(0.0, output_loss=negative) == pytest.approx(eta, rel=1e-5)
  # log beta stays in [-20, 20] (exp stays finite in float32) ...
  assert step(20.0, output_loss=negative) == 20.0
  assert step(-20.0) == -20.0  # the excess is far over the tiny budget
  # ... and a step with a non-finite loss leaves it alone.
  assert step(0.5, f=lambda p, x: f_apply(p, x) * jnp.nan) == 0.5
