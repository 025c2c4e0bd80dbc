"""orbax checkpoints: atomic saves, resume from the newest readable step.

A damaged latest checkpoint is skipped with a warning and removed, and
checkpoints of another config (other shapes) are refused with the differences
named, never silently replaced by a fresh start.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
from typing import Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

State = dict  # {'step': int32 scalar, 'params': pytree, 'opt_state': pytree}


class CheckpointError(RuntimeError):
  """Checkpoints exist but none of them can be read."""


class CheckpointMismatchError(ValueError):
  """A checkpoint holds another state than the one asked for (another config)."""


class CheckpointSaveError(OSError):
  """A checkpoint could not be written (e.g. no space left on the device).

  Its ``errno`` is the underlying one (``errno.ENOSPC`` for a full disk).
  """

  def __str__(self):
    return self.strerror


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


def _os_errno(e: BaseException):
  """The errno behind ``e``: an OSError in its chain, or one that orbax /
  TensorStore wrapped into a message (``[os_error_code='28']``)."""
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, OSError) and e.errno is not None:
      return e.errno
    m = re.search(r"os_error_code='?(\d+)", str(e))
    if m:
      return int(m.group(1))
    if 'No space left on device' in str(e):
      return errno.ENOSPC
    e = e.__cause__ or e.__context__
  return None


def save_state(manager, step: int, state, *, what: str = 'the training state',
               last_good=None) -> None:
  """Saves ``state`` as checkpoint ``step`` and waits until it is written.

  Raises:
    CheckpointSaveError (an OSError with the underlying errno) where writing
    fails for lack of space, quota or permission: the message names the
    checkpoint, the directory, the free space left and the checkpoint the
    run resumes from. The half-written temporary directory is removed (an
    interrupted save never replaces a complete checkpoint). Other errors
    propagate unchanged.
  """
  directory = os.fspath(manager.directory)
  try:
    manager.save(step, args=ocp.args.StandardSave(state))
    manager.wait_until_finished()
  except Exception as e:  # pylint: disable=broad-except
    code = _os_errno(e)
    if code not in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS,
                    errno.EPERM):
      raise
    for name in os.listdir(directory) if os.path.isdir(directory) else ():
      if name.startswith(f'{step}.') and 'tmp' in name:
        shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
    try:
      usage = shutil.disk_usage(directory)
      free = f'{usage.free / 2**20:.1f} MiB free of {usage.total / 2**20:.0f} MiB'
    except OSError:
      free = 'free space unknown'
    resume = (f'it resumes from checkpoint {last_good}' if last_good is not None
              else 'nothing was saved yet, so it starts over')
    problem = ('no space left on the device' if code in (errno.ENOSPC,
                                                       errno.EDQUOT)
               else f'{os.strerror(code).lower()}')
    fix = ('free some space (or point --workdir at a larger disk)'
           if code in (errno.ENOSPC, errno.EDQUOT) else
           'make the directory writable (or use another --workdir)')
    raise CheckpointSaveError(
        code,
        f'Could not write checkpoint {step} of {what} in {directory}: '
        f'{problem} ({free}). The incomplete checkpoint was removed and '
        f'training stopped. To continue, {fix} and run the same command '
        f'again: {resume}.') from e


def _key_name(k) -> str:
  for attr in ('key', 'idx', 'name'):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def array_specs(tree) -> dict[str, tuple]:
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
    stored = array_specs(
        checkpointer.metadata(_step_path(directory, step)).item_metadata.tree)
  except Exception:  # pylint: disable=broad-except
    return None
  finally:
    checkpointer.close()
  expected = array_specs(abstract)
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


