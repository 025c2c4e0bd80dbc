"""Atomic writes: an interrupted run never leaves a truncated file behind."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path: str):
  """Yields a temporary path beside ``path``; renamed onto it on success.

  Whatever is written to the temporary path is flushed to disk and then
  renamed onto ``path`` in one step, so ``path`` holds either its old content
  or the complete new one. If the block raises, ``path`` is left untouched and
  the temporary file removed.
  """
  directory = os.path.dirname(os.path.abspath(path)) or '.'
  os.makedirs(directory, exist_ok=True)
  suffix = os.path.splitext(path)[1]
  fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp-', suffix=suffix)
  os.close(fd)
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give a normal file's mode
  try:
    yield tmp
    with open(tmp, 'rb') as fh:
      os.fsync(fh.fileno())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_text(path: str, text: str) -> None:
  """Writes ``text`` to ``path`` atomically."""
  with atomic_path(path) as tmp:
    with open(tmp, 'w') as fh:
      fh.write(text)


def write_json(path: str, obj) -> None:
  """Writes ``obj`` as indented JSON to ``path`` atomically."""
  write_text(path, json.dumps(obj, indent=2, sort_keys=True) + '\n')


def save_figure(fig, path: str, **kwargs) -> None:
  """Saves a matplotlib figure to ``path`` atomically and closes it."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  with atomic_path(path) as tmp:
    fig.savefig(tmp, format=os.path.splitext(path)[1][1:] or 'png', **kwargs)
  plt.close(fig)
