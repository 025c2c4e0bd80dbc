"""The two updates every experiment needs: F on its task, A on the frozen F.

Each builder returns ``update(state, data, key) -> (state, metrics)`` over an
explicit state pytree ``{'step', 'params', 'opt_state'}``, for `loop.fit`.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from lanjax import losses as losses_lib
from lanjax import objective
from lanjax.training.sharding import shard_batch
from lanjax.training.xla import platform_of

State = dict  # {'step': int32 scalar, 'params': pytree, 'opt_state': pytree}


def init_state(params, tx: optax.GradientTransformation, *,
               beta: Optional[float] = None) -> State:
  """The training state for ``params`` optimised with ``tx``.

  With ``beta``, the state also holds ``'log_beta'``, the LAN objective's
  weight that `lan_update` adapts to a fidelity budget.
  """
  state = {'step': jnp.zeros((), jnp.int32), 'params': params,
           'opt_state': tx.init(params)}
  if beta is not None:
    if not beta > 0:
      raise ValueError(f'beta must be > 0 to be adapted in log space, got '
                       f'{beta!r}.')
    state['log_beta'] = jnp.log(jnp.asarray(beta, jnp.float32))
  return state


def apply_gradients(state: State, grads, loss, tx) -> tuple[State, Any]:
  """One optimiser step; skipped (state kept) if loss or grads are non-finite.

  The step is taken when the loss and the gradients' global norm are finite
  (a gradient whose norm overflows float32, above ~1e19, counts as
  non-finite too). The optimiser runs inside a `jax.lax.cond`, so a normal
  step pays for no select over the parameters and the optimiser state
  (Pong's LAN step, K = 1 on the 2-core CPU: 1.13x faster than selecting
  the kept state element-wise).

  Returns the new state and a float flag, 1.0 where the step was finite.
  """
  finite = jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(grads))

  def step(operands):
    grads, params, opt_state = operands
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  params, opt_state = jax.lax.cond(
      finite, step, lambda operands: operands[1:],
      (grads, state['params'], state['opt_state']))
  new_state = {**state, 'step': state['step'] + 1, 'params': params,
               'opt_state': opt_state}
  return new_state, finite.astype(jnp.float32)


def classifier_update(graphdef, tx, batch_fn: Callable, *, mesh=None,
                      forward: Optional[Callable] = None,
                      loss: Optional[Callable] = None):
  """Builds the update that trains F on its task: a classifier on its labels
  by default, or any F with its own per-example ``loss`` (an autoencoder's
  reconstruction error).

  Args:
    graphdef: F's NNX graph definition (`nnx.split`).
    tx: the optax optimiser.
    batch_fn: ``batch_fn(data, key) -> {'x': (B, ...), 'y': (B,) int}``; makes
      the batch inside the jitted step.
    mesh: optional device mesh; the batch is sharded over its ``data`` axis.
    forward: ``forward(model, x, key) -> logits`` for models that need a key
      in training (dropout); defaults to ``model(x)``.
    loss: ``loss(output, batch) -> (B,)``, F's loss per example; defaults to
      the softmax cross-entropy of the logits with the integer labels
      ``batch['y']`` (and then the metrics include the batch accuracy).

  Returns:
    ``update(state, data, key) -> (state, metrics)``.
  """
  forward = forward or (lambda model, x, key: model(x))
  classify = loss is None
  if classify:
    loss = lambda logits, batch: (
        optax.softmax_cross_entropy_with_integer_labels(logits, batch['y']))

  def update(state, data, key):
    data_key, model_key = jax.random.split(key)
    batch = shard_batch(batch_fn(data, data_key), mesh)

    def loss_fn(params):
      out = forward(nnx.merge(graphdef, params), batch['x'], model_key)
      return loss(out, batch).mean(), out

    (value, out), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state['params'])
    state, finite = apply_gradients(state, grads, value, tx)
    metrics = {'loss': value, 'grad_norm': optax.tree.norm(grads),
               'finite': finite}
    if classify:
      metrics['accuracy'] = (jnp.argmax(out, -1) == batch['y']).mean()
    return state, metrics

  return update


def lan_update(graphdef, tx, f_apply: Callable, batch_fn: Callable, *,
               beta: float, num_samples: int,
               output_loss: Callable = losses_lib.softmax_cross_entropy,
               chunk_size: Optional[int] = None,
               chunk_memory: Optional[int] = None,
               cpu_max_inputs: Optional[int] = 64, mesh=None,
               fidelity_budget: Optional[float] = None,
               beta_learning_rate: float = 0.02):
  r"""Builds the update that trains the LAN A with F frozen (eq. 3).

  Two modes. Fixed beta (the paper's): minimise
  ``E[L_F(F(x~), F(x))] - beta * mean(A(x))``. Fidelity budget: the user
  states how much fidelity may be lost, ``E[L_F(F(x~), F(x)) - L_F(F(x),
  F(x))] <= fidelity_budget`` (L_F's excess over its value without
  corruption: for the softmax cross-entropy, the KL divergence of F's
  prediction on x~ from its prediction on x; for the squared error, the
  error itself), and beta is the multiplier of that constraint, adapted by dual ascent after every
  step (the Lagrangian of "corrupt as much as possible subject to the
  budget", divided by the multiplier):

  .. math::
    \log\beta \leftarrow \log\beta + \eta\,
        \mathrm{clip}((\epsilon - \overline{\Delta L_F}) / \epsilon, -1, 1)

  so beta grows (A corrupts more) while the fidelity loss is under the
  budget and shrinks when it is over. The state must then hold
  ``'log_beta'`` (`init_state` with ``beta=`` the starting value); beta is
  logged every step as ``'beta'``. This removes the guesswork of choosing
  beta for a new F, whose L_F has its own scale (the paper's betas span
  0.0005 to 50).

  Args:
    graphdef: A's NNX graph definition.
    tx: the optax optimiser for A.
    f_apply: ``f_apply(f_params, x) -> output``: the frozen black box.
    batch_fn: ``batch_fn(data, key) -> x`` of shape ``(B, *d)``.
    beta: weight of the mean mask in the objective.
    num_samples: ``K``, noise samples per example (F sees B * K inputs).
    output_loss: ``L_F``, per example.
    chunk_size: optional cap on noise samples evaluated at once (memory).
    chunk_memory: optional memory budget in bytes per device for F's
      evaluations at once; sets ``chunk_size`` (when that is None) with
      `objective.chunk_size_for_memory`.
    cpu_max_inputs: on CPU, when neither of the above is set, the most
      corrupted inputs F evaluates at once per device: larger ``B * K`` is
      tiled into chunks of noise samples, at least one (activations kept,
      nothing recomputed). The default 64 evaluates a batch of 64 or more one
      noise sample at a time: for every convolutional F of the experiments,
      at K = 8 and 32, that ran 1.1-2x faster per evaluation than larger
      tiles (2-core CPU, benchmarks/results.md: their activations stay in
      the caches); an F that is one large matrix product (20 Newsgroups)
      prefers larger tiles, its config sets 1024. None or 0: never; ignored
      on GPU and TPU, which want the largest batch.
    mesh: optional device mesh for the batch.
    fidelity_budget: None for a fixed ``beta``; else the budget ``epsilon``
      (> 0) of the mean excess fidelity loss, and ``beta`` is adapted from
      the state's ``'log_beta'`` (logged with the excess as
      ``'fidelity_excess'``).
    beta_learning_rate: ``eta``, the dual-ascent step on ``log beta``.

  ``data`` must hold ``'f_params'`` (F's parameters) and ``'noise'`` (a
  `lanjax.noise` distribution) besides what ``batch_fn`` reads.

  Returns:
    ``update(state, data, key) -> (state, metrics)``.
  """

  if fidelity_budget is not None and not fidelity_budget > 0:
    raise ValueError(
        f'fidelity_budget must be > 0 (the mean L_F to keep) or None for a '
        f'fixed beta, got {fidelity_budget!r}.')

  def update(state, data, key):
    adaptive = fidelity_budget is not None
    if adaptive and 'log_beta' not in state:
      raise ValueError(
          'lan_update(fidelity_budget=...) adapts beta, so the state must '
          "hold 'log_beta': build it with init_state(params, tx, beta=...).")
    b = jnp.exp(state['log_beta']) if adaptive else beta
    data_key, noise_key = jax.random.split(key)
    x = shard_batch(batch_fn(data, data_key), mesh)
    # (K, B, ...): sharded along B like the batch, so that each device draws
    # and evaluates only its own examples' noise samples.
    noise = shard_batch(data['noise'].sample(noise_key, x, num_samples), mesh,
                        axis=1)
    f = lambda z: f_apply(data['f_params'], z)
    target = f(x)
    chunk, remat = chunk_size, True
    per_device = x.shape[0] // (mesh.size if mesh is not None else 1)
    if chunk is None and chunk_memory:
      chunk = objective.chunk_size_for_memory(
          f, jax.ShapeDtypeStruct((per_device,) + x.shape[1:], x.dtype),
          num_samples=num_samples, max_bytes=chunk_memory)
    if (chunk is None and cpu_max_inputs and platform_of(mesh) == 'cpu'
        and per_device * num_samples > cpu_max_inputs):
      chunk, remat = max(1, cpu_max_inputs // max(per_device, 1)), False

    def loss_fn(params):
      mask = nnx.merge(graphdef, params)(x)
      fidelity_loss, mask_mean = objective.lan_terms(
          f, x, mask, noise, output_loss=output_loss, target=target,
          chunk_size=chunk, remat=remat)
      loss = (fidelity_loss - b * mask_mean).mean()
      return loss, (fidelity_loss.mean(), mask_mean.mean())

    (loss, (fidelity_loss, mask_mean)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state['params'])
    state, finite = apply_gradients(state, grads, loss, tx)
    metrics = {'loss': loss, 'fidelity_loss': fidelity_loss,
               'mask_mean': mask_mean,
               'grad_norm': optax.tree.norm(grads), 'finite': finite}
    if adaptive:
      excess = fidelity_loss - output_loss(target, target).mean()
      step = beta_learning_rate * jnp.clip(
          (fidelity_budget - excess) / fidelity_budget, -1.0, 1.0)
      new_log_beta = jnp.clip(state['log_beta'] + jax.lax.stop_gradient(step),
                              -20.0, 20.0)
      state['log_beta'] = jnp.where(finite > 0, new_log_beta,
                                    state['log_beta'])
      metrics['beta'], metrics['fidelity_excess'] = b, excess
    return state, metrics

  return update


