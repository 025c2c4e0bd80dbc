"""The resumable training loop around a jitted update."""

from __future__ import annotations

import os
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from lanjax import validation
from lanjax.training.checkpoints import array_specs
from lanjax.training.checkpoints import checkpoint_manager
from lanjax.training.checkpoints import restore_latest
from lanjax.training.checkpoints import save_state
from lanjax.training.logs import MetricLogger
from lanjax.training.sharding import replicate
from lanjax.training.windows import Windows
from lanjax.training.xla import jit

State = dict  # {'step': int32 scalar, 'params': pytree, 'opt_state': pytree}


class NonFiniteError(FloatingPointError):
  """Training produced a non-finite loss or gradient."""



def fit(update: Callable, state: State, data, *, rng, num_steps: int,
        workdir, name: str, log_every: int = 100,
        checkpoint_every: int = 1000, max_to_keep: int = 2, mesh=None,
        eval_fn: Optional[Callable[[State], dict]] = None,
        eval_every: int = 0, tensorboard: bool = True,
        check_inputs: bool = True, steps_per_dispatch: int = 1) -> State:
  """Runs ``update`` until ``state['step'] == num_steps``, resumably.

  If ``workdir/checkpoints/name`` holds a checkpoint, training resumes from
  the latest readable one; a finished run returns at once.

  Args:
    update: ``update(state, data, key) -> (state, metrics)``; jitted here with
      the state donated.
    state: the initial state (used as the structure to restore into).
    data: pytree of arrays the update reads (datasets, F's parameters, noise),
      or a `Windows` (`lanjax.training.windows`): data read one window at a
      time, window ``(s // steps_per_window) % num_windows`` for step ``s``,
      loaded (host read, then ``device_put``) only when a step needs another
      window than the last, the previous one dropped first. A call never
      crosses a window boundary and every window has the same shapes: one
      compilation, and a resumed run reads what an uninterrupted one reads.
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
    steps_per_dispatch: ``N``, updates run by one call of the compiled step:
      a loop over up to N steps inside one jitted call (`multi_step`), so
      the host dispatches and fetches metrics once per N steps instead of
      every step (GPUs and TPUs spend as long launching a small step as
      running it). A call never crosses a report, checkpoint or evaluation
      step, so these happen at the same steps for every N, and every step
      uses the same key ``fold_in(rng, step)``; with N = 1 each step is
      one call, as before.

  Raises:
    NonFiniteError: a loss or gradient became NaN or inf (the message names
      the step and the last good checkpoint).
    CheckpointMismatchError: the checkpoints in the work dir belong to another
      config.
    ValueError: ``data`` holds NaN/inf, or the update does not fit the state
      and data (found by `check_update` before anything is compiled), or
      ``data`` is a `Windows` without ``steps_per_window``.

  Returns:
    The final state.
  """
  windows = data if isinstance(data, Windows) else None
  if windows is not None and windows.steps_per_window < 1:
    raise ValueError(
        f'[{name}] the windowed data has no steps_per_window: set it with '
        'Windows.for_batch(batch_size) before fit.')
  put = jax.device_put if mesh is None else (lambda t: replicate(t, mesh))
  if mesh is not None:
    # Replicated over the mesh before restoring, so that a checkpoint is
    # restored straight into the replicated layout (on every host).
    state = replicate(state, mesh)
    if windows is None:
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
  if steps_per_dispatch < 1:
    manager.close()
    raise ValueError(f'steps_per_dispatch must be >= 1, got '
                     f'{steps_per_dispatch!r}.')

  def load_window(w):
    tic = time.perf_counter()
    out = windows.load(w, put)
    print(f'[{name}] window {w} of {windows.num_windows} ({windows.size} '
          f'examples) read in {time.perf_counter() - tic:.1f} s', flush=True)
    return out

  # The step's key is made inside the call, from the state's step: one
  # dispatch per step, not one for the key and one for the step.
  one_step = jit(
      lambda state, data, rng: update(
          state, data, jax.random.fold_in(rng, state['step'])),
      mesh=mesh, donate_argnums=0)
  try:
    if windows is not None:  # the window of the first step, read only now
      current = windows.window(start)
      data = load_window(current)
    check_update(one_step, state, data, rng, name=name,
                 check_inputs=check_inputs)
  except Exception:
    manager.close()
    raise
  if steps_per_dispatch > 1:
    many = jit(multi_step(update, steps_per_dispatch), mesh=mesh,
               donate_argnums=0)

  def boundary(done):
    """The next step at which something is reported, saved or evaluated."""
    nxt = [num_steps, (done // log_every + 1) * log_every,
           (done // checkpoint_every + 1) * checkpoint_every]
    if eval_fn is not None and eval_every:
      nxt.append((done // eval_every + 1) * eval_every)
    if windows is not None:
      nxt.append(windows.next_boundary(done))
    return min(nxt)

  logger = MetricLogger(workdir, name, total_steps=num_steps,
                        tensorboard=tensorboard)
  logger.start(start)
  pending = []  # device metrics since the last report: no per-step host sync
  last_good = restored_step
  done = start
  try:
    while done < num_steps:
      if windows is not None and windows.window(done) != current:
        current = windows.window(done)
        # The previous window is dropped, and the steps still running on it
        # (dispatch is asynchronous) finish, before the next is read: one
        # window held, on the host and on the device.
        data = None
        jax.block_until_ready(state)
        data = load_window(current)
        if check_inputs:
          validation.check_finite(data, name=f'[{name}] data window {current}')
      n = min(steps_per_dispatch, boundary(done) - done)
      if steps_per_dispatch == 1:
        state, metrics = one_step(state, data, rng)
      else:
        state, metrics = many(state, data, rng, n)
      pending.append((n, metrics))
      done += n
      report = done % log_every == 0 or done == num_steps
      save = done % checkpoint_every == 0 or done == num_steps
      if report or save:
        host = [m for count, ms in jax.device_get(pending)
                for m in _unstack(ms, count, steps_per_dispatch)]
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
        save_state(manager, done, state, what=f'[{name}]',
                   last_good=last_good)
        last_good = done
  finally:
    manager.wait_until_finished()
    manager.close()
    logger.close()
  return state


def multi_step(update: Callable, max_steps: int) -> Callable:
  """Up to ``max_steps`` updates in one call, for `jax.jit`.

  Returns:
    ``run(state, data, rng, n) -> (state, metrics)``: ``n <= max_steps``
    steps of ``update`` in a `jax.lax.fori_loop` (``n`` is traced: one
    compilation serves every ``n``), step ``s`` with the key ``fold_in(rng,
    s)`` as `fit` gives it (``s`` read from ``state['step']``); ``metrics``
    holds every step's metrics stacked along a leading axis of length
    ``max_steps``, of which the first ``n`` are this call's.
  """
  def run(state, data, rng, n):
    def one(state):
      return update(state, data, jax.random.fold_in(rng, state['step']))

    _, metrics_shape = jax.eval_shape(one, state)
    buf = jax.tree.map(
        lambda m: jnp.zeros((max_steps,) + m.shape, m.dtype), metrics_shape)

    def body(i, carry):
      state, buf = carry
      state, metrics = one(state)
      buf = jax.tree.map(lambda b, m: b.at[i].set(m), buf, metrics)
      return state, buf

    return jax.lax.fori_loop(0, n, body, (state, buf))
  return run


def _unstack(metrics, count: int, stacked: int) -> list:
  """Host metrics of one call as a list of ``count`` per-step dicts."""
  if stacked == 1:
    return [metrics]
  return [{k: v[i] for k, v in metrics.items()} for i in range(count)]


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
  before, after = array_specs(state), array_specs(new_state)
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


