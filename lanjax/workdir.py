"""A run's work dir: checked before use, and locked by the run that trains in it.

* `check_workdir` - the ``--workdir`` is a directory we can use (for writing,
  or, for evaluation, one that exists), else `WorkdirError` with what to do;
* `lock` - one training run per work dir: a lock file ``.lock`` in it names
  the owner (pid, host, start time, command); a second run is refused with
  `WorkdirLockedError` naming the first. The lock is released on exit, and a
  lock left by a run that no longer exists (killed, machine rebooted) is
  detected as stale and taken over. Readers (``evaluate.py``) take no lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import tempfile
import time
from typing import Iterator, Optional

LOCK_NAME = '.lock'


class WorkdirError(RuntimeError):
  """The work dir cannot be used (a file, unwritable, missing)."""


class WorkdirLockedError(WorkdirError):
  """Another live run holds the work dir's lock."""


def check_workdir(workdir: str, *, write: bool = True) -> str:
  """Checks that ``workdir`` can be used; returns its absolute path.

  Args:
    workdir: the run directory.
    write: the run writes there (training): the directory is created if
      needed and must be writable. Otherwise (evaluation) it must exist.

  Raises:
    WorkdirError naming the path, the problem and what to do.
  """
  path = os.path.abspath(os.path.expanduser(os.fspath(workdir)))
  if os.path.exists(path) and not os.path.isdir(path):
    raise WorkdirError(
        f'--workdir {path} is a file, not a directory. Pass a directory '
        '(a new one is created), e.g. --workdir runs/my_run.')
  parent = _existing_parent(path)
  if not os.path.isdir(parent):
    raise WorkdirError(
        f'--workdir {path} cannot be created: {parent} is a file, not a '
        'directory. Pass a path under a directory.')
  if not write:
    if not os.path.isdir(path):
      raise WorkdirError(
          f'--workdir {path} does not exist: there is no run to read. Train '
          'it first (train.py with the same --config and --workdir), or '
          'point --workdir at an existing run.')
    return path
  try:
    os.makedirs(path, exist_ok=True)
    fd, probe = tempfile.mkstemp(dir=path, prefix='.write-test-')
    os.close(fd)
    os.remove(probe)
  except OSError as e:
    raise WorkdirError(
        f'--workdir {path} is not writable ({describe_os_error(e)}). Choose '
        'a directory you can write to, or fix its permissions (e.g. chmod '
        'u+w).') from e
  return path


def _existing_parent(path: str) -> str:
  while not os.path.exists(path):
    parent = os.path.dirname(path)
    if parent == path:
      break
    path = parent
  return path


def describe_os_error(e: OSError) -> str:
  """``'No space left on device: /path'``-style text of an OSError."""
  what = os.strerror(e.errno) if e.errno else str(e)
  where = e.filename or ''
  return f'{what}: {where}' if where else what


def _process_start(pid: int) -> Optional[str]:
  """The start time of process ``pid`` (Linux ``/proc``), to tell a reused
  pid from the lock's owner; None where it cannot be read."""
  try:
    with open(f'/proc/{pid}/stat') as fh:
      return fh.read().rsplit(')', 1)[1].split()[19]
  except (OSError, IndexError):
    return None


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, another user's
    return True
  return True


def read_lock(workdir: str) -> Optional[dict]:
  """The owner recorded in ``workdir``'s lock file, or None if unlocked.

  ``{}`` when the file exists but cannot be parsed.
  """
  path = os.path.join(workdir, LOCK_NAME)
  try:
    with open(path) as fh:
      return json.load(fh)
  except FileNotFoundError:
    return None
  except (OSError, ValueError):
    return {}


def is_stale(owner: dict) -> bool:
  """Whether a lock's owner is a process of this host that no longer runs.

  A lock of another host is never stale here (its processes cannot be seen).
  """
  if not owner or owner.get('host') != socket.gethostname():
    return False
  pid = owner.get('pid')
  if not isinstance(pid, int) or not _alive(pid):
    return True
  start = owner.get('pid_start')
  return start is not None and _process_start(pid) not in (None, start)


def describe_owner(owner: dict) -> str:
  if not owner:
    return 'an unknown run (the lock file cannot be read)'
  started = time.strftime('%Y-%m-%d %H:%M:%S',
                          time.localtime(owner.get('time', 0)))
  return (f'pid {owner.get("pid")} on host {owner.get("host")}, started '
          f'{started} ({owner.get("command", "?")})')


@contextlib.contextmanager
def lock(workdir: str) -> Iterator[dict]:
  """Holds ``workdir``'s lock for the duration of the block.

  The lock file is created atomically with its content (written to a
  temporary file, then hard-linked into place, which fails if a lock
  exists), so a reader never sees it half written.

  Yields:
    The owner record written (``pid``, ``host``, ``time``, ``command``).

  Raises:
    WorkdirLockedError: a live run (or one of another host) holds the lock;
      the message names it and says how to remove a lock left behind.
  """
  workdir = os.path.abspath(workdir)
  path = os.path.join(workdir, LOCK_NAME)
  owner = {'pid': os.getpid(), 'host': socket.gethostname(),
           'pid_start': _process_start(os.getpid()), 'time': time.time(),
           'command': ' '.join([os.path.basename(sys.argv[0])]
                               + sys.argv[1:])[:300]}
  fd, tmp = tempfile.mkstemp(dir=workdir, prefix='.lock-')
  try:
    with os.fdopen(fd, 'w') as fh:
      json.dump(owner, fh)
    for _ in range(3):
      try:
        os.link(tmp, path)
        break
      except FileExistsError:
        other = read_lock(workdir)
        if other is None:  # released in between
          continue
        if not is_stale(other):
          raise WorkdirLockedError(
              f'--workdir {workdir} is in use by another training run: '
              f'{describe_owner(other)}. Wait for it to finish, or use '
              'another --workdir. If that run is gone (e.g. its machine '
              f'was restarted), delete {path} and run again. '
              '(evaluate.py may read the work dir meanwhile.)') from None
        print(f'NOTE: removing the stale lock of {describe_owner(other)}, '
              f'which no longer runs: {path}', flush=True)
        if read_lock(workdir) != other:  # another run took it over first
          continue
        with contextlib.suppress(FileNotFoundError):
          os.remove(path)
    else:
      raise WorkdirLockedError(
          f'Could not take the lock {path}: other runs keep taking it. '
          'Start one run per --workdir.')
  finally:
    os.remove(tmp)
  try:
    yield owner
  finally:
    release(workdir, owner)


def release(workdir: str, owner: dict) -> None:
  """Removes ``workdir``'s lock if ``owner`` holds it (else leaves it)."""
  if read_lock(workdir) == owner:
    with contextlib.suppress(FileNotFoundError):
      os.remove(os.path.join(os.path.abspath(workdir), LOCK_NAME))


__all__ = ['LOCK_NAME', 'WorkdirError', 'WorkdirLockedError', 'check_workdir',
           'describe_os_error', 'describe_owner', 'is_stale', 'lock', 'release',
           'read_lock']
