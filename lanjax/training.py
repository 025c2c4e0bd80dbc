"""Training machinery: one jitted update, a resumable loop, checkpoints, logs.

The loop is generic over an ``update(state, data, key) -> (state, metrics)``
function with an explicit state pytree ``{'step', 'params', 'opt_state'}``:

* compiled once (`jax.jit` with the state donated), ``data`` passed as an
  argument so datasets are device buffers, not constants in the program;
* PRNG keys threaded explicitly: per step ``fold_in(rng, step)``, which makes a
  resumed run bitwise identical to an uninterrupted one (on CPU; tested by
  SIGKILLing ``train.py``);
* orbax checkpoints (atomic), resumed from the latest good one: a damaged
  latest checkpoint is skipped with a warning and removed, an interrupted
  save's temporary directory is cleaned up, and checkpoints of another config
  (other shapes) are refused with the differences named, never silently
  replaced by a fresh start;
* before the first step, `check_update` traces the update with
  `jax.eval_shape` and checks the data for NaN/inf, so shape and input errors
  are raised with the library's messages before anything is compiled;
* progress lines with step rate, TensorBoard scalars (clu) and a JSON-lines
  file per run in the work dir;
* a non-finite loss or gradient never updates the parameters and stops the run
  with the step and the last good checkpoint named.

`classifier_update` and `lan_update` build the two updates every experiment
needs: train F on its task, then train A with F frozen.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
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
from lanjax import validation
from lanjax.validation import check_lan_setup  # pylint: disable=unused-import

State = dict  # {'step': int32 scalar, 'params': pytree, 'opt_state': pytree}


# ----------------------------------------------------------------------------
# Compilation.

# XLA:CPU in jaxlib 0.10 hands reductions to YNNPACK fusions by default. Those
# run a sum over a leading axis, the one every LAN step has (the gradient of
# the mask A(x) summed over the K noise samples, and the bias gradients of a
# convolutional F), about 100x slower than XLA's own loops: 25 ms instead of
# 0.2 ms for an (8, 128, 28, 28) sum on 2 cores. Keeping YNNPACK for dots and
# convolutions only (its other defaults) removes that; see benchmarks/.
_YNN_OPTION = 'xla_cpu_experimental_ynn_fusion_type'
_CPU_COMPILER_OPTIONS = {
    _YNN_OPTION: 'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,'
                 'LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION'}


@functools.lru_cache(maxsize=None)
def compiler_options(platform: Optional[str] = None) -> Optional[dict]:
  """XLA options lanjax compiles its steps with on ``platform`` (or None).

  On CPU: YNNPACK fusions for dots and convolutions only, not reductions
  (see above). None elsewhere, when ``XLA_FLAGS`` already sets the YNNPACK
  fusion types (the user's choice wins), when ``LANJAX_XLA_DEFAULTS=1``, or
  when this jaxlib does not know the option.
  """
  platform = platform or jax.default_backend()
  if (platform != 'cpu' or os.environ.get('LANJAX_XLA_DEFAULTS') == '1'
      or _YNN_OPTION in os.environ.get('XLA_FLAGS', '')):
    return None
  try:
    jax.jit(lambda a: a.sum(0)).lower(
        jax.ShapeDtypeStruct((2, 2), jnp.float32)).compile(
            compiler_options=_CPU_COMPILER_OPTIONS)
  except Exception:  # pylint: disable=broad-except
    logging.info('XLA does not accept %s; using its defaults.',
                 _CPU_COMPILER_OPTIONS)
    return None
  return dict(_CPU_COMPILER_OPTIONS)


def _platform(mesh=None) -> str:
  return (mesh.devices.flat[0].platform if mesh is not None
          else jax.default_backend())


def jit(fun: Callable, *, mesh=None, **kwargs):
  """`jax.jit` with lanjax's `compiler_options` for the mesh's platform."""
  return jax.jit(fun, compiler_options=compiler_options(_platform(mesh)),
                 **kwargs)


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


def shard_batch(x, mesh: Optional[jax.sharding.Mesh], *, axis: int = 0):
  """Constrains axis ``axis`` (the batch) of ``x`` to the mesh's ``data`` axis.

  Inside a jitted step this tells XLA to split the batch over the devices
  (each device computes its slice); a no-op without a mesh of several devices.
  """
  if mesh is None or mesh.size == 1:
    return x
  spec = P(*([None] * axis + ['data']))
  return jax.tree.map(
      lambda a: jax.lax.with_sharding_constraint(a, NamedSharding(mesh, spec)),
      x)


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
               chunk_size: Optional[int] = None,
               chunk_memory: Optional[int] = None,
               cpu_max_inputs: Optional[int] = 1024, mesh=None):
  """Builds the update that trains the LAN A with F frozen (eq. 3).

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
      tiled into chunks of noise samples (activations kept, nothing
      recomputed), because beyond the CPU's caches every evaluation costs up
      to 2x more (benchmarks/results.md). None or 0: never; ignored on GPU
      and TPU, which want the largest batch.
    mesh: optional device mesh for the batch.

  ``data`` must hold ``'f_params'`` (F's parameters) and ``'noise'`` (a
  `lanjax.noise` distribution) besides what ``batch_fn`` reads.

  Returns:
    ``update(state, data, key) -> (state, metrics)``.
  """

  def update(state, data, key):
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
    if (chunk is None and cpu_max_inputs and _platform(mesh) == 'cpu'
        and per_device * num_samples > cpu_max_inputs):
      chunk, remat = max(1, cpu_max_inputs // max(per_device, 1)), False

    def loss_fn(params):
      mask = nnx.merge(graphdef, params)(x)
      fidelity, coverage = objective.lan_terms(
          f, x, mask, noise, output_loss=output_loss, target=target,
          chunk_size=chunk, remat=remat)
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


class CheckpointError(RuntimeError):
  """Checkpoints exist but none of them can be read."""


class CheckpointMismatchError(ValueError):
  """A checkpoint holds another state than the one asked for (another config)."""


def checkpoint_manager(directory, *, max_to_keep: int = 2,
                       cleanup_tmp: bool = False):
  """An orbax CheckpointManager over ``directory`` (atomic saves).

  Args:
    directory: where the step directories live.
    max_to_keep: checkpoints kept.
    cleanup_tmp: remove temporary directories that an interrupted save left
      behind (only for the process that trains into ``directory``).
  """
  return ocp.CheckpointManager(
      os.path.abspath(directory),
      options=ocp.CheckpointManagerOptions(
          max_to_keep=max_to_keep, create=True,
          cleanup_tmp_directories=cleanup_tmp))


def _key_name(k) -> str:
  for attr in ('key', 'idx', 'name'):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def _array_specs(tree) -> dict[str, tuple]:
  """``{path: (shape, dtype)}`` of a state, a `ShapeDtypeStruct` tree or an
  orbax metadata tree; paths written the same way for all three."""
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {'/'.join(_key_name(k) for k in path): (
      tuple(leaf.shape), str(np.dtype(leaf.dtype))) for path, leaf in flat
          if hasattr(leaf, 'shape')}


def _step_path(directory, step) -> str:
  return os.path.join(os.fspath(directory), str(step), 'default')


def _restore_step(directory, step, abstract):
  checkpointer = ocp.StandardCheckpointer()
  try:
    return checkpointer.restore(_step_path(directory, step), abstract)
  finally:
    checkpointer.close()


def _describe_mismatch(directory, step, abstract) -> Optional[str]:
  """How the stored state differs from ``abstract``; None if it does not (or
  if its metadata cannot be read, i.e. the checkpoint is damaged)."""
  checkpointer = ocp.StandardCheckpointer()
  try:
    stored = _array_specs(
        checkpointer.metadata(_step_path(directory, step)).item_metadata.tree)
  except Exception:  # pylint: disable=broad-except
    return None
  finally:
    checkpointer.close()
  expected = _array_specs(abstract)
  if sorted(stored.values()) == sorted(expected.values()):
    return None
  fmt = lambda v: 'missing' if v is None else f'{v[1]}{list(v[0])}'
  diffs = [f'{p}: stored {fmt(stored.get(p))}, expected {fmt(expected.get(p))}'
           for p in sorted(set(stored) | set(expected),
                           key=lambda p: (not p.startswith('params'), p))
           if stored.get(p) != expected.get(p)]
  more = f' (and {len(diffs) - 5} more)' if len(diffs) > 5 else ''
  return (f'{len(stored)} arrays stored, {len(expected)} expected; '
          + '; '.join(diffs[:5]) + more)


def _warn(message: str):
  logging.warning('%s', message)
  print(f'WARNING: {message}', flush=True)


def _restore_newest(directory, steps, target, *, what: str):
  """Restores the newest readable step: ``(state, step, unreadable_steps)``.

  Raises CheckpointMismatchError where a checkpoint holds another state, and
  CheckpointError where checkpoints exist but none can be read.
  """
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  unreadable, last_error = [], None
  for step in sorted(steps, reverse=True):
    mismatch = _describe_mismatch(directory, step, abstract)
    if mismatch is not None:
      raise CheckpointMismatchError(
          f'The checkpoint of {what} at {directory} (step {step}) does not '
          f'match the state the config builds: {mismatch}. It was written '
          'with another config (another architecture or optimiser): use '
          'the config that wrote it, or another --workdir (or delete '
          f'{directory} to start over).')
    try:
      return _restore_step(directory, step, abstract), step, unreadable
    except Exception as e:  # pylint: disable=broad-except
      last_error = e
      unreadable.append(step)
      _warn(f'checkpoint {step} of {what} in {directory} cannot be read '
            f'({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ""}); '
            'falling back to the previous one.')
  if unreadable:
    raise CheckpointError(
        f'None of the checkpoints of {what} in {directory} (steps '
        f'{sorted(unreadable)}) can be read; the last error was '
        f'{type(last_error).__name__}: {last_error}. Delete {directory} to '
        'train it again from the start.') from last_error
  return None, None, unreadable


def restore_latest(manager, target, *, what: Optional[str] = None):
  """Restores the newest readable checkpoint into ``target``'s structure.

  A latest checkpoint that cannot be read (half written, corrupted) is skipped
  with a warning, the previous one is used, and the unreadable ones are
  deleted so that training can write those steps again.

  Raises:
    CheckpointMismatchError (a ValueError) if a checkpoint holds another
    state (a run of another config); CheckpointError if checkpoints exist but
    none can be read. Training never silently starts over.

  Returns:
    ``(state, step)``, or ``(None, None)`` if there is no checkpoint.
  """
  directory = os.fspath(manager.directory)
  state, step, unreadable = _restore_newest(
      directory, manager.all_steps(), target,
      what=what or 'the training state')
  if unreadable and jax.process_index() == 0:
    for bad in unreadable:
      shutil.rmtree(os.path.join(directory, str(bad)), ignore_errors=True)
      _warn(f'removed the unreadable checkpoint {bad} in {directory}; '
            f'training resumes from step {step}.')
    manager.reload()
  return state, step


def load_state(directory, target: State, *, what: str = 'F') -> tuple[State, int]:
  """Loads the latest readable checkpoint in ``directory`` into ``target``.

  Read only: an unreadable latest checkpoint is skipped with a warning.

  Raises:
    FileNotFoundError when there is no checkpoint, CheckpointMismatchError (a
    ValueError) when it does not match ``target`` (another architecture), each
    naming what was expected and where.

  Returns:
    ``(state, step)``.
  """
  directory = os.path.abspath(directory)
  if not os.path.isdir(directory):
    raise FileNotFoundError(
        f'No checkpoint of {what} at {directory}: the directory does not '
        'exist. Train it first (train.py with the same --config and --workdir '
        'trains F, then A), or point --workdir at the run that holds it.')
  manager = ocp.CheckpointManager(
      directory, options=ocp.CheckpointManagerOptions(read_only=True))
  try:
    steps = manager.all_steps()
  finally:
    manager.close()
  if not steps:
    raise FileNotFoundError(
        f'The directory {directory} holds no checkpoint of {what} (no '
        'finished step directory). Train it first (train.py with the same '
        '--config and --workdir), or point --workdir at the run that holds '
        'it.')
  state, step, _ = _restore_newest(directory, steps, target, what=what)
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
    _drop_log_records_after(self.jsonl_path, step)

  def write(self, step: int, scalars: dict):
    """Logs training scalars averaged since the last call, with the step rate."""
    now = time.perf_counter()
    rate = (step - self._s0) / max(now - self._t0, 1e-9)
    self._t0, self._s0 = now, step
    self._emit(step, {**scalars, 'steps_per_sec': rate},
               f' ({rate:.1f} steps/s)')

  def write_eval(self, step: int, scalars: dict):
    """Logs evaluation scalars with a ``test_`` prefix."""
    if scalars:
      self._emit(step, {f'test_{k}': v for k, v in scalars.items()})

  def _emit(self, step: int, scalars: dict, suffix: str = ''):
    scalars = {k: float(v) for k, v in scalars.items()}
    if jax.process_index() == 0:
      with open(self.jsonl_path, 'a') as fh:
        fh.write(json.dumps({'step': step, **scalars}) + '\n')
    if self.writer is not None:
      self.writer.write_scalars(step, scalars)
      self.writer.flush()
    shown = ' '.join(f'{k}={v:.4g}' for k, v in scalars.items()
                     if k not in ('finite', 'steps_per_sec'))
    print(f'[{self.name}] step {step}/{self.total_steps} {shown}{suffix}',
          flush=True)

  def close(self):
    if self.writer is not None:
      self.writer.close()


def read_metric(jsonl_path: str, key: str) -> list[list[float]]:
  """``[[step, value], ...]`` of ``key`` in a run's JSON-lines metrics file.

  E.g. ``read_metric(workdir + '/metrics_f.jsonl', 'test_accuracy')`` is F's
  learning curve. A missing file gives ``[]``.
  """
  points = []
  if os.path.exists(jsonl_path):
    with open(jsonl_path) as fh:
      for line in fh:
        try:
          record = json.loads(line)
        except json.JSONDecodeError:  # a line cut off by a killed run
          continue
        if key in record:
          points.append([record['step'], record[key]])
  return points


# ----------------------------------------------------------------------------
# The loop.


def fit(update: Callable, state: State, data, *, rng, num_steps: int,
        workdir, name: str, log_every: int = 100,
        checkpoint_every: int = 1000, max_to_keep: int = 2, mesh=None,
        eval_fn: Optional[Callable[[State], dict]] = None,
        eval_every: int = 0, tensorboard: bool = True,
        check_inputs: bool = True) -> State:
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
    check_inputs: before the first step, check that ``data`` holds no NaN or
      inf (`lanjax.validation.check_finite`).

  Raises:
    NonFiniteError: a loss or gradient became NaN or inf (the message names
      the step and the last good checkpoint).
    CheckpointMismatchError: the checkpoints in the work dir belong to another
      config.
    ValueError: ``data`` holds NaN/inf, or the update does not fit the state
      and data (found by `check_update` before anything is compiled).

  Returns:
    The final state.
  """
  if mesh is not None:
    # Replicated over the mesh before restoring, so that a checkpoint is
    # restored straight into the replicated layout (on every host).
    state = replicate(state, mesh)
    data = replicate(data, mesh)
  manager = checkpoint_manager(os.path.join(workdir, 'checkpoints', name),
                               max_to_keep=max_to_keep, cleanup_tmp=True)
  try:
    restored, restored_step = restore_latest(manager, state, what=f'[{name}]')
  except Exception:
    manager.close()
    raise
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
  step_fn = jit(update, mesh=mesh, donate_argnums=0)
  try:
    check_update(step_fn, state, data, rng, name=name,
                 check_inputs=check_inputs)
  except Exception:
    manager.close()
    raise
  logger = MetricLogger(workdir, name, total_steps=num_steps,
                        tensorboard=tensorboard)
  logger.start(start)
  pending = []  # device metrics since the last report: no per-step host sync
  last_good = restored_step
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
          good = (f'step {last_good} in {manager.directory}'
                  if last_good is not None else
                  f'none (nothing was saved in {manager.directory})')
          raise NonFiniteError(
              f'[{name}] non-finite loss or gradient at step {first} '
              f'(loss={host[bad[0]]["loss"]}); that update was not applied '
              f'and training stopped. Last good checkpoint: {good}. Lower '
              'the learning rate, or check the inputs and F for NaN/inf, then '
              'run the same command again to resume from that checkpoint.')
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


def check_update(update: Callable, state: State, data, rng, *,
                 name: str = 'train', check_inputs: bool = True):
  """Checks ``update`` against ``state`` and ``data`` without running it.

  Traces one step with `jax.eval_shape` (nothing is compiled or computed), so
  a shape error in the data, F, A or the noise is raised here, before the
  first step, with the library's message rather than from inside XLA. Checks
  that the update returns a state of the same structure, shapes and dtypes
  (required to compile the step once and donate the state) and metrics with
  ``'loss'`` and ``'finite'``; with ``check_inputs``, that ``data`` holds no
  NaN or inf.

  Raises:
    ValueError naming the problem.
  """
  if check_inputs:
    validation.check_finite(data, name=f'[{name}] data')
  try:
    new_state, metrics = jax.eval_shape(update, state, data,
                                        jax.random.fold_in(rng, 0))
  except Exception as e:
    e.add_note(f'(raised while checking the [{name}] update on its state and '
               'data before the first step, with jax.eval_shape: nothing was '
               'compiled or run.)')
    raise
  before, after = _array_specs(state), _array_specs(new_state)
  if (jax.tree.structure(state) != jax.tree.structure(new_state)
      or before != after):
    diffs = [f'{p}: {before.get(p)} -> {after.get(p)}'
             for p in sorted(set(before) | set(after))
             if before.get(p) != after.get(p)]
    raise ValueError(
        f'[{name}] the update returns a state that differs from the one it is '
        f'given ({"; ".join(diffs[:5]) or "another pytree structure"}). It '
        'must return the same structure, shapes and dtypes: the state is '
        'donated and the step compiled once.')
  missing = [k for k in ('loss', 'finite') if k not in metrics]
  if missing:
    raise ValueError(
        f'[{name}] the update\'s metrics lack {missing}: fit needs the loss '
        'and the finite flag of `apply_gradients` to stop on NaN/inf.')


def _drop_log_records_after(path: str, step: int) -> None:
  """Keeps only the JSON-lines records of ``path`` up to ``step``.

  Records past ``step`` come from an interrupted run (the resumed run writes
  them again); a line cut short by a kill is dropped too.
  """
  if not os.path.exists(path) or jax.process_index() != 0:
    return
  with open(path) as fh:
    lines = fh.read().splitlines()
  kept = []
  for line in lines:
    try:
      if json.loads(line)['step'] <= step:
        kept.append(line)
    except (ValueError, KeyError, TypeError):  # a half-written last line
      pass
  if len(kept) != len(lines):
    io.write_text(path, ''.join(line + '\n' for line in kept))


def make_mesh(num_devices: Optional[int] = None) -> jax.sharding.Mesh:
  """A 1-D mesh with a ``data`` axis over the first ``num_devices`` devices.

  All devices of all hosts by default (after `jax.distributed.initialize` on
  a multi-host system): one CPU, one GPU, or every core of a TPU pod slice.
  """
  devices = jax.devices()
  n = len(devices) if not num_devices else num_devices
  if n > len(devices):
    raise ValueError(f'Asked for {n} devices but only {len(devices)} exist.')
  return jax.sharding.Mesh(np.asarray(devices[:n]), ('data',))


def replicate(tree, mesh: jax.sharding.Mesh):
  """Places every array of ``tree`` on all devices of ``mesh`` (replicated).

  On several hosts every process must pass the same values (datasets and
  parameters are built deterministically from the config and seed); each
  host then fills its own devices.
  """
  sharding = NamedSharding(mesh, P())
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)

  def put(a):
    if not hasattr(a, 'shape'):
      return a
    host = np.asarray(a)
    return jax.make_array_from_callback(host.shape, sharding,
                                        lambda index: host[index])
  return jax.tree.map(put, tree)


def check_divisible(batch_size: int, mesh, what: str = 'batch size'):
  if mesh is not None and batch_size % mesh.size:
    raise ValueError(
        f'The {what} {batch_size} does not divide over the {mesh.size} '
        f'devices of the mesh; use a multiple of {mesh.size}.')
