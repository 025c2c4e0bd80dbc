"""Training machinery: one jitted update, a resumable loop, checkpoints, logs.

The loop is generic over an ``update(state, data, key) -> (state, metrics)``
function with an explicit state pytree ``{'step', 'params', 'opt_state'}``:

* compiled once (`jax.jit` with the state donated), ``data`` passed as an
  argument so datasets are device buffers, not constants in the program;
* PRNG keys threaded explicitly: per step ``fold_in(rng, step)``, which makes a
  resumed run identical to an uninterrupted one;
* orbax checkpoints (atomic), resumed from the latest good one;
* progress lines with step rate, TensorBoard scalars (clu) and a JSON-lines
  file per run in the work dir;
* a non-finite loss or gradient never updates the parameters and stops the run
  with the step and the last good checkpoint named.

`classifier_update` and `lan_update` build the two updates every experiment
needs: train F on its task, then train A with F frozen.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from lanjax import io
from lanjax import losses as losses_lib
from lanjax import objective

State = dict  # {'step': int32 scalar, 'params': pytree, 'opt_state': pytree}


class NonFiniteError(FloatingPointError):
  """Training produced a non-finite loss or gradient."""


# ----------------------------------------------------------------------------
# State and updates.


def init_state(params, tx: optax.GradientTransformation) -> State:
  """The training state for ``params`` optimised with ``tx``."""
  return {'step': jnp.zeros((), jnp.int32), 'params': params,
          'opt_state': tx.init(params)}


def apply_gradients(state: State, grads, loss, tx) -> tuple[State, Any]:
  """One optimiser step; skipped (state kept) if loss or grads are non-finite.

  Returns the new state and a float flag, 1.0 where the step was finite.
  """
  updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
  params = optax.apply_updates(state['params'], updates)
  finite = jnp.isfinite(loss) & jnp.all(jnp.asarray(
      [jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
  keep = lambda new, old: jnp.where(finite, new, old)
  new_state = {
      'step': state['step'] + 1,
      'params': jax.tree.map(keep, params, state['params']),
      'opt_state': jax.tree.map(keep, opt_state, state['opt_state']),
  }
  return new_state, finite.astype(jnp.float32)


def shard_batch(x, mesh: Optional[jax.sharding.Mesh]):
  """Constrains the leading (batch) axis of ``x`` to the mesh's ``data`` axis."""
  if mesh is None or mesh.size == 1:
    return x
  return jax.tree.map(
      lambda a: jax.lax.with_sharding_constraint(
          a, NamedSharding(mesh, P('data'))), x)


def classifier_update(graphdef, tx, batch_fn: Callable, *, mesh=None,
                      forward: Optional[Callable] = None):
  """Builds the update that trains a classifier F on its labels.

  Args:
    graphdef: F's NNX graph definition (`nnx.split`).
    tx: the optax optimiser.
    batch_fn: ``batch_fn(data, key) -> {'x': (B, ...), 'y': (B,) int}``; makes
      the batch inside the jitted step.
    mesh: optional device mesh; the batch is sharded over its ``data`` axis.
    forward: ``forward(model, x, key) -> logits`` for models that need a key
      in training (dropout); defaults to ``model(x)``.

  Returns:
    ``update(state, data, key) -> (state, metrics)``.
  """
  forward = forward or (lambda model, x, key: model(x))

  def update(state, data, key):
    data_key, model_key = jax.random.split(key)
    batch = shard_batch(batch_fn(data, data_key), mesh)

    def loss_fn(params):
      logits = forward(nnx.merge(graphdef, params), batch['x'], model_key)
      loss = optax.softmax_cross_entropy_with_integer_labels(
          logits, batch['y']).mean()
      return loss, logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state['params'])
    state, finite = apply_gradients(state, grads, loss, tx)
    metrics = {
        'loss': loss,
        'accuracy': (jnp.argmax(logits, -1) == batch['y']).mean(),
        'grad_norm': optax.tree.norm(grads),
        'finite': finite,
    }
    return state, metrics

  return update


def lan_update(graphdef, tx, f_apply: Callable, batch_fn: Callable, *,
               beta: float, num_samples: int,
               output_loss: Callable = losses_lib.softmax_cross_entropy,
               chunk_size: Optional[int] = None, mesh=None):
  """Builds the update that trains the LAN A with F frozen (eq. 3).

  Args:
    graphdef: A's NNX graph definition.
    tx: the optax optimiser for A.
    f_apply: ``f_apply(f_params, x) -> output``: the frozen black box.
    batch_fn: ``batch_fn(data, key) -> x`` of shape ``(B, *d)``.
    beta: weight of the mean mask in the objective.
    num_samples: ``K``, noise samples per example (vmapped).
    output_loss: ``L_F``, per example.
    chunk_size: optional cap on noise samples evaluated at once (memory).
    mesh: optional device mesh for the batch.

  ``data`` must hold ``'f_params'`` (F's parameters) and ``'noise'`` (a
  `lanjax.noise` distribution) besides what ``batch_fn`` reads.

  Returns:
    ``update(state, data, key) -> (state, metrics)``.
  """

  def update(state, data, key):
    data_key, noise_key = jax.random.split(key)
    x = shard_batch(batch_fn(data, data_key), mesh)
    noise = data['noise'].sample(noise_key, x, num_samples)
    f = lambda z: f_apply(data['f_params'], z)
    target = f(x)

    def loss_fn(params):
      mask = nnx.merge(graphdef, params)(x)
      fidelity, coverage = objective.lan_terms(
          f, x, mask, noise, output_loss=output_loss, target=target,
          chunk_size=chunk_size)
      loss = (fidelity - beta * coverage).mean()
      return loss, (fidelity.mean(), coverage.mean())

    (loss, (fidelity, coverage)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state['params'])
    state, finite = apply_gradients(state, grads, loss, tx)
    metrics = {'loss': loss, 'fidelity': fidelity, 'mask_mean': coverage,
               'grad_norm': optax.tree.norm(grads), 'finite': finite}
    return state, metrics

  return update


# ----------------------------------------------------------------------------
# Checkpoints.


def checkpoint_manager(directory, *, max_to_keep: int = 2):
  """An orbax CheckpointManager over ``directory`` (atomic saves)."""
  return ocp.CheckpointManager(
      os.path.abspath(directory),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                           create=True))


def restore_latest(manager, target):
  """Restores the newest readable checkpoint into ``target``'s structure.

  A latest checkpoint that cannot be read (half written, corrupted) is skipped
  with a warning and the previous one is used.

  Returns:
    ``(state, step)``, or ``(None, None)`` if there is no readable checkpoint.
  """
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
      return restored, step
    except Exception as e:  # pylint: disable=broad-except
      logging.warning(
          'Checkpoint %d in %s cannot be read (%s: %s); falling back to the '
          'previous one.', step, manager.directory, type(e).__name__, e)
      print(f'WARNING: checkpoint {step} in {manager.directory} cannot be '
            f'read ({type(e).__name__}); falling back to the previous one.',
            flush=True)
  return None, None


def load_state(directory, target: State, *, what: str = 'F') -> tuple[State, int]:
  """Loads the latest checkpoint in ``directory`` into ``target``'s structure.

  Raises FileNotFoundError when there is none and ValueError when it does not
  match ``target`` (another architecture), each naming what was expected.

  Returns:
    ``(state, step)``.
  """
  if not os.path.isdir(directory):
    raise FileNotFoundError(
        f'No checkpoint of {what} at {directory}. Train it first (train.py '
        'with the same --workdir trains F before A), or point the config at '
        'the work dir that holds it.')
  manager = checkpoint_manager(directory)
  try:
    if not manager.all_steps():
      raise FileNotFoundError(
          f'The directory {directory} holds no checkpoint of {what}.')
    step = manager.latest_step()
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    try:
      state = manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as e:
      raise ValueError(
          f'The checkpoint of {what} at {directory} (step {step}) does not '
          f'match the network the config builds ({type(e).__name__}: {e}). '
          'Use the config that trained it.') from e
  finally:
    manager.close()
  return state, step


# ----------------------------------------------------------------------------
# Logging.


class MetricLogger:
  """Writes scalars to TensorBoard (clu), a JSON-lines file and stdout."""

  def __init__(self, workdir, name: str, *, total_steps: int,
               tensorboard: bool = True):
    self.name = name
    self.total_steps = total_steps
    os.makedirs(workdir, exist_ok=True)
    self.jsonl_path = os.path.join(workdir, f'metrics_{name}.jsonl')
    self.writer = None
    if tensorboard:
      from clu import metric_writers  # pylint: disable=g-import-not-at-top
      self.writer = metric_writers.create_default_writer(
          os.path.join(workdir, 'tensorboard', name),
          just_logging=jax.process_index() > 0, asynchronous=False)
    self._t0, self._s0 = None, None

  def start(self, step: int):
    """Starts timing at ``step``; drops logged lines past it (lost work)."""
    self._t0, self._s0 = time.perf_counter(), step
    if jax.process_index() == 0 and os.path.exists(self.jsonl_path):
      with open(self.jsonl_path) as fh:
        lines = [l for l in fh if l.strip()]
      kept = [l for l in lines if json.loads(l)['step'] <= step]
      if len(kept) != len(lines):
        io.write_text(self.jsonl_path, ''.join(kept))

  def write(self, step: int, scalars: dict):
    now = time.perf_counter()
    rate = (step - self._s0) / max(now - self._t0, 1e-9)
    self._t0, self._s0 = now, step
    scalars = {k: float(v) for k, v in scalars.items()}
    scalars['steps_per_sec'] = rate
    if jax.process_index() == 0:
      with open(self.jsonl_path, 'a') as fh:
        fh.write(json.dumps({'step': step, **scalars}) + '\n')
    if self.writer is not None:
      self.writer.write_scalars(step, scalars)
      self.writer.flush()
    shown = ' '.join(f'{k}={v:.4g}' for k, v in scalars.items()
                     if k not in ('finite', 'steps_per_sec'))
    print(f'[{self.name}] step {step}/{self.total_steps} {shown} '
          f'({rate:.1f} steps/s)', flush=True)

  def write_eval(self, step: int, scalars: dict):
    scalars = {f'test_{k}': float(v) for k, v in scalars.items()}
    if jax.process_index() == 0:
      with open(self.jsonl_path, 'a') as fh:
        fh.write(json.dumps({'step': step, **scalars}) + '\n')
    if self.writer is not None:
      self.writer.write_scalars(step, scalars)
      self.writer.flush()
    shown = ' '.join(f'{k}={v:.4g}' for k, v in scalars.items())
    print(f'[{self.name}] step {step}/{self.total_steps} {shown}', flush=True)

  def close(self):
    if self.writer is not None:
      self.writer.close()


# ----------------------------------------------------------------------------
# The loop.


def fit(update: Callable, state: State, data, *, rng, num_steps: int,
        workdir, name: str, log_every: int = 100,
        checkpoint_every: int = 1000, max_to_keep: int = 2, mesh=None,
        eval_fn: Optional[Callable[[State], dict]] = None,
        eval_every: int = 0, tensorboard: bool = True) -> State:
  """Runs ``update`` until ``state['step'] == num_steps``, resumably.

  If ``workdir/checkpoints/name`` holds a checkpoint, training resumes from
  the latest readable one; a finished run returns at once.

  Args:
    update: ``update(state, data, key) -> (state, metrics)``; jitted here with
      the state donated.
    state: the initial state (used as the structure to restore into).
    data: pytree of arrays the update reads (datasets, F's parameters, noise).
    rng: root PRNG key of this run; step ``s`` uses ``fold_in(rng, s)``.
    num_steps: total number of updates.
    workdir: the run's directory.
    name: run name: checkpoints in ``workdir/checkpoints/name``, metrics in
      ``workdir/metrics_name.jsonl`` and ``workdir/tensorboard/name``.
    log_every: steps between metric reports (the only host syncs).
    checkpoint_every: steps between checkpoints (one is always written at the
      end).
    max_to_keep: checkpoints kept.
    mesh: optional mesh: state and data are replicated over it.
    eval_fn: optional ``eval_fn(state) -> {name: scalar}``, logged with a
      ``test_`` prefix every ``eval_every`` steps and at the end.
    eval_every: steps between evaluations (0: only at the end).
    tensorboard: write TensorBoard summaries.

  Returns:
    The final state.
  """
  manager = checkpoint_manager(os.path.join(workdir, 'checkpoints', name),
                               max_to_keep=max_to_keep)
  restored, restored_step = restore_latest(manager, state)
  if restored is not None:
    state = restored
    print(f'[{name}] resuming from checkpoint at step {restored_step}',
          flush=True)
  start = int(state['step'])
  if start > num_steps:
    print(f'WARNING: [{name}] the checkpoint at step {start} is past '
          f'num_steps={num_steps}; it is used as it is.', flush=True)
  if start >= num_steps:
    manager.close()
    return state
  if mesh is not None:
    replicated = NamedSharding(mesh, P())
    state = jax.device_put(state, replicated)
    data = jax.device_put(data, replicated)

  step_fn = jax.jit(update, donate_argnums=0)
  logger = MetricLogger(workdir, name, total_steps=num_steps,
                        tensorboard=tensorboard)
  logger.start(start)
  pending = []  # device metrics since the last report: no per-step host sync
  last_good = manager.latest_step()
  try:
    for step in range(start, num_steps):
      state, metrics = step_fn(state, data, jax.random.fold_in(rng, step))
      pending.append(metrics)
      done = step + 1
      report = done % log_every == 0 or done == num_steps
      save = done % checkpoint_every == 0 or done == num_steps
      if report or save:
        host = jax.device_get(pending)
        pending = []
        bad = [i for i, m in enumerate(host) if not m['finite']]
        if bad:
          first = done - len(host) + bad[0] + 1
          raise NonFiniteError(
              f'[{name}] non-finite loss or gradient at step {first} '
              f'(loss={host[bad[0]]["loss"]}); the update was not applied. '
              f'Last good checkpoint: '
              f'{"step %d in %s" % (last_good, manager.directory) if last_good is not None else "none"}.'
              ' Lower the learning rate or check the inputs for NaN/inf.')
        if report:
          logger.write(done, {k: np.mean([m[k] for m in host])
                              for k in host[-1]})
      if eval_fn is not None and (
          done == num_steps or (eval_every and done % eval_every == 0)):
        logger.write_eval(done, eval_fn(state))
      if save:
        manager.save(done, args=ocp.args.StandardSave(state))
        manager.wait_until_finished()
        last_good = done
  finally:
    manager.wait_until_finished()
    manager.close()
    logger.close()
  return state


def make_mesh(num_devices: Optional[int] = None) -> jax.sharding.Mesh:
  """A 1-D mesh with a ``data`` axis over the first ``num_devices`` devices."""
  devices = jax.devices()
  n = len(devices) if not num_devices else num_devices
  if n > len(devices):
    raise ValueError(f'Asked for {n} devices but only {len(devices)} exist.')
  return jax.sharding.Mesh(np.asarray(devices[:n]), ('data',))


def check_divisible(batch_size: int, mesh, what: str = 'batch size'):
  if mesh is not None and batch_size % mesh.size:
    raise ValueError(
        f'The {what} {batch_size} does not divide over the {mesh.size} '
        f'devices of the mesh; use a multiple of {mesh.size}.')
