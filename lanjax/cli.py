"""What train.py and evaluate.py share: flags, config checks, work dir, errors, logs.

* ``--config`` / ``--config.a.b=v`` / ``--workdir`` as before;
* the work dir is checked first (a file, unwritable, missing for evaluation:
  one message), and training holds its lock (`lanjax.workdir.lock`): a second
  ``train.py`` on the same ``--workdir`` is refused, naming the first;
* an error stops the command with one message on stderr (what, where, what
  to do) and exit status 1, the traceback only with ``--verbose``;
* absl warnings that are expected in a normal run (orbax opening a finished
  run read-only, TFDS without OpenCV) are filtered (`quiet_expected_warnings`);
  others still show.
"""

from __future__ import annotations

import errno
import logging as py_logging
import os
import re
import signal
import sys
from typing import Callable

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from lanjax import config as config_lib
from lanjax import workdir as workdir_lib

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(_ROOT, 'configs', 'translated_mnist.py')

# Exit status of a command stopped by an error (the message says which), and
# of one interrupted with Ctrl-C.
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

# absl WARNINGs that a normal run produces and that are not problems:
# orbax opening finished checkpoints read-only (evaluation, `load_state`),
# orbax restoring checkpoints written without its optional metadata file, and
# TFDS decoding images with PIL because OpenCV is not installed.
EXPECTED_WARNINGS = (
    r'CheckpointManagerOptions\.read_only=True, setting',
    r'Given directory is read only',
    r'Metadata file does not exist: .*_CHECKPOINT_METADATA',
    r'OpenCV is not installed',
    r'No dataset_info\.json|dataset_info\.json.*(not found|does not exist)',
)
# Errors that orbax logs from its background threads and then raises again in
# the main thread, where the CLI reports them in one message.
EXPECTED_ERRORS = (
    r'_SignalingThread\.run\(\) raised an exception',
    r'Failed to run \d+ Handler Commit operations',
    r'Save Finalize thread \(save_finalize\) failed',
)


class _ExpectedWarnings(py_logging.Filter):
  """Drops the log records whose message matches `EXPECTED_WARNINGS`."""

  def __init__(self, patterns, errors=()):
    super().__init__()
    self.pattern = re.compile('|'.join(f'(?:{p})' for p in patterns))
    self.errors = re.compile('|'.join(f'(?:{p})' for p in errors) or '$^')

  def filter(self, record):
    try:
      message = record.getMessage()
    except Exception:  # pylint: disable=broad-except
      return True
    if record.levelno > py_logging.WARNING:
      return not self.errors.search(message)
    return not self.pattern.search(message)


def quiet_expected_warnings(patterns=EXPECTED_WARNINGS,
                            errors=EXPECTED_ERRORS) -> py_logging.Filter:
  """Filters the absl warnings of `EXPECTED_WARNINGS` (once per process).

  WARNING and lower records matching ``patterns`` are dropped, and ERROR
  records matching ``errors`` (orbax's background-thread reports of an error
  it raises again in the caller); any other warning or error still shows.

  Returns:
    The filter installed on the ``absl`` logger (remove it with
    ``logging.getLogger('absl').removeFilter(f)``).
  """
  logger = py_logging.getLogger('absl')
  for f in logger.filters:
    if isinstance(f, _ExpectedWarnings):
      return f
  f = _ExpectedWarnings(patterns, errors)
  logger.addFilter(f)
  return f


def error_message(e: BaseException) -> str:
  """The one message a CLI prints for ``e``: what went wrong, where, what to do.

  lanjax's errors already say all three; an OSError is described from its
  errno (no space left, permission denied) with the path; an error that is
  not one of lanjax's (a bug) names its type and asks for ``--verbose``.
  """
  text = str(e).strip() or repr(e)
  notes = getattr(e, '__notes__', None)
  if notes:
    text += '\n' + '\n'.join(notes)
  if type(e).__module__.startswith('lanjax'):
    return text
  os_error = _find_os_error(e)
  if os_error is not None and os_error.errno in (errno.ENOSPC, errno.EDQUOT):
    return (f'No space left on the device ({workdir_lib.describe_os_error(os_error)}'
            f'). Free some space (or point --workdir at another disk) and '
            'run the same command again: training resumes from the last '
            'complete checkpoint.')
  if os_error is not None and os_error.errno in (errno.EACCES, errno.EPERM,
                                                 errno.EROFS):
    return (f'Cannot write ({workdir_lib.describe_os_error(os_error)}). '
            'Fix the permissions, or use a --workdir (and data dir) you can '
            'write to.')
  if _raised_by_lanjax(e):
    return text
  return (f'{type(e).__name__}: {text}\n(an unexpected error: run the same '
          'command with --verbose for the traceback, and report it if it '
          'looks like a bug in lanjax.)')


_PACKAGE_DIR = os.path.join(_ROOT, 'lanjax') + os.sep


def _raised_by_lanjax(e: BaseException) -> bool:
  """Whether ``e`` was raised in lanjax's code (whose messages say what to
  do), rather than deep in a dependency."""
  tb, last = e.__traceback__, None
  while tb is not None:
    last, tb = tb, tb.tb_next
  return last is not None and os.path.abspath(
      last.tb_frame.f_code.co_filename).startswith(_PACKAGE_DIR)


def _find_os_error(e):
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, OSError) and e.errno is not None:
      return e
    e = e.__cause__ or e.__context__
  return None


def run(main: Callable[..., None], *, lock: bool = False) -> None:
  """Runs ``main(config, workdir)`` under absl with lanjax's common flags.

  ``--config configs/x.py[:variant]`` (default: translated MNIST) with
  ``--config.a.b=value`` overrides, checked by `lanjax.config.validate`;
  ``--workdir`` (default: ``runs/<experiment>``), checked by
  `lanjax.workdir.check_workdir`; ``--verbose`` for tracebacks.

  Args:
    main: ``main(config, workdir)``.
    lock: ``main`` writes the run (training): the work dir is created, must
      be writable, and is locked while ``main`` runs. Otherwise (evaluation)
      it must exist and is not locked.
  """
  config_flag = config_flags.DEFINE_config_file(
      'config', DEFAULT_CONFIG,
      'Experiment config file (configs/*.py[:variant]).', lock_config=True)
  workdir_flag = flags.DEFINE_string(
      'workdir', None, 'Run directory (default: runs/<experiment>).')
  verbose_flag = flags.DEFINE_bool(
      'verbose', False, 'On an error, print the full traceback (and keep '
      'library INFO logs).')

  def _main(argv):
    del argv
    if not flags.FLAGS['verbosity'].present and not verbose_flag.value:
      logging.set_verbosity(logging.WARNING)  # keep library INFO logs quiet
    if not verbose_flag.value:
      quiet_expected_warnings()
    # SIGTERM (kill, a scheduler's preemption) stops the run at once with
    # its lock released: checkpoints are atomic and the logs are trimmed on
    # resume, so nothing else needs unwinding (an exception raised from the
    # handler could be swallowed where it lands in a gc or __del__ callback).
    held = []
    signal.signal(signal.SIGTERM,
                  lambda signum, frame: _terminate(held))
    try:
      if config_flag.value.get('distributed', False):
        # Multi-host (TPU pod slices, GPU clusters): join the other processes
        # before JAX is used; coordinator and ranks come from the environment.
        import jax  # pylint: disable=g-import-not-at-top
        jax.distributed.initialize()
      config = config_lib.validate_or_exit(config_flag.value)
      workdir = workdir_flag.value or os.path.join('runs', config.experiment)
      workdir_lib.check_workdir(workdir, write=lock)
      if lock:
        with workdir_lib.lock(workdir) as owner:
          held.append((workdir, owner))
          main(config, workdir)
      else:
        main(config, workdir)
    except SystemExit:
      raise
    except KeyboardInterrupt:
      if verbose_flag.value:
        raise
      _fail('Interrupted. Run the same command again to resume from the '
            'last checkpoint.', EXIT_INTERRUPTED)
    except Exception as e:  # pylint: disable=broad-except
      if verbose_flag.value:
        raise
      _fail(error_message(e), EXIT_ERROR)

  app.run(_main, flags_parser=config_lib.parse_flags)


def _terminate(held):
  for workdir, owner in held:
    workdir_lib.release(workdir, owner)
  print('ERROR: Terminated. Run the same command again to resume from the '
        'last checkpoint.', file=sys.stderr, flush=True)
  os._exit(EXIT_TERMINATED)  # pylint: disable=protected-access


def _fail(message: str, code: int):
  sys.stdout.flush()
  print(f'ERROR: {message}', file=sys.stderr, flush=True)
  sys.exit(code)
