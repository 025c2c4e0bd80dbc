"""Training data read one window at a time: more examples than fit in memory.

`fit` takes a `Windows` in place of the data pytree. The ``N`` examples are cut
into ``ceil(N / size)`` windows of ``size`` examples; step ``s`` reads window
``(s // steps_per_window) % num_windows``, a function of the step alone, so a
resumed run reads exactly the data an uninterrupted one reads (and its result
is bitwise the same). `fit` loads a window (host read, then ``device_put``)
only when a step needs another one than the last; a compiled call never
crosses a window boundary, and every window has the same shapes, so nothing
recompiles. At most one window is held, on the host or on the device: the
previous one is dropped before the next is read (no prefetch).

Every window holds ``size`` examples. Where ``N`` is not a multiple of
``size``, the last window is filled up by wrapping around to the first
examples (window ``w`` holds examples ``w * size + i mod N``).

Example:
  >>> import numpy as np
  >>> x = np.arange(10.)
  >>> w = Windows(read=lambda idx: {'x': x[idx]}, num_examples=10, size=4,
  ...             steps_per_window=2)
  >>> w.num_windows, [w.window(s) for s in range(8)]
  (3, [0, 0, 1, 1, 2, 2, 0, 0])
  >>> w.indices(2)
  array([8, 9, 0, 1])
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np


@dataclasses.dataclass(frozen=True)
class Windows:
  """Training data that `fit` reads one window of examples at a time.

  Attributes:
    read: ``read(indices) -> pytree`` of host (NumPy) arrays: the examples at
      ``indices`` (int64 ``(size,)``) stacked on their first axis
      (`from_source` makes one from a random-access data source).
    num_examples: ``N``, examples in the data.
    size: examples per window, ``1 <= size <= N``.
    steps_per_window: steps that read one window before the next one is read
      (`for_batch`: as many draws as the window holds examples); 0: not set
      yet (`fit` refuses it).
    build: ``build(window) -> data``: the pytree the update reads, made from
      the window's arrays once they are on the device (e.g. F's parameters
      and noise whose pool is the window added); None: the window itself.
    field: the setting that chose ``size``, named in error messages (e.g.
      ``'config.data.window_frames'``).
  """
  read: Callable[[np.ndarray], Any]
  num_examples: int
  size: int
  steps_per_window: int = 0
  build: Optional[Callable[[Any], Any]] = None
  field: str = 'the window size'

  def __post_init__(self):
    if int(self.num_examples) < 1:
      raise ValueError(f'Windowed data needs at least one example, got '
                       f'num_examples={self.num_examples}.')
    if not 1 <= int(self.size) <= int(self.num_examples):
      raise ValueError(
          f'{self.field}={self.size} must be between 1 and the number of '
          f'training examples, {self.num_examples}: a window larger than the '
          f'data would repeat examples. Set {self.field} to at most '
          f'{self.num_examples}, or to 0 to hold all of them in memory.')
    if int(self.steps_per_window) < 0:
      raise ValueError(f'steps_per_window must be >= 0, got '
                       f'{self.steps_per_window}.')

  def __len__(self) -> int:
    return int(self.num_examples)

  @property
  def num_windows(self) -> int:
    return -(-int(self.num_examples) // int(self.size))

  def window(self, step: int) -> int:
    """The window that step ``step`` reads."""
    return (int(step) // int(self.steps_per_window)) % self.num_windows

  def next_boundary(self, step: int) -> int:
    """The first step after ``step`` that starts a window."""
    spw = int(self.steps_per_window)
    return (int(step) // spw + 1) * spw

  def indices(self, w: int) -> np.ndarray:
    """The examples of window ``w``: ``(w * size + arange(size)) mod N``."""
    return (int(w) * int(self.size)
            + np.arange(int(self.size), dtype=np.int64)) % int(
                self.num_examples)

  def load(self, w: int, put: Callable[[Any], Any] = lambda t: t):
    """Window ``w`` as the update reads it: ``build(put(read(indices(w))))``.

    ``put`` moves the host arrays to the device (`fit`: ``jax.device_put``
    or `replicate` over the mesh); ``build`` runs on what it returns, so that
    every leaf ``build`` makes from the window shares its device buffers.
    """
    window = put(self.read(self.indices(w)))
    return window if self.build is None else self.build(window)

  def map(self, fn: Callable[[Any], Any]) -> 'Windows':
    """The same windows, with ``fn`` applied after `build` to each."""
    build = self.build
    composed = fn if build is None else (lambda window: fn(build(window)))
    return dataclasses.replace(self, build=composed)

  def for_batch(self, batch_size: int, *, what: str = 'the batch size'
                ) -> 'Windows':
    """These windows with ``steps_per_window = size // batch_size``.

    Each window is then drawn as many examples as it holds before the next
    one is read; one pass over the windows draws about ``N`` examples.

    Raises:
      ValueError: ``size`` is not a multiple of ``batch_size`` (``what``
        names the batch size's setting).
    """
    if int(batch_size) < 1:
      raise ValueError(f'{what} must be >= 1, got {batch_size}.')
    if int(self.size) % int(batch_size):
      fix = max(int(batch_size), int(self.size) // batch_size * batch_size)
      raise ValueError(
          f'{self.field}={self.size} must be a multiple of {what}='
          f'{batch_size} (a window is read for size / batch steps). Set '
          f'{self.field} to a multiple of {batch_size}, e.g. {fix}.')
    return dataclasses.replace(self,
                               steps_per_window=int(self.size) // batch_size)


def from_source(source, size: int, keys: Union[Mapping[str, str],
                                              Sequence[str]], *,
                field: str = 'the window size',
                chunk: int = 4096) -> Windows:
  """`Windows` over a random-access data source (e.g. ``tfds.data_source``).

  Args:
    source: a data source with ``len(source)`` and ``source[i]`` (or the
      batched ``source.__getitems__(indices)``) returning a dict of features
      per example.
    size: examples per window.
    keys: the features to read: ``{name in the window: feature key}``, or
      feature keys kept under their own names.
    field: the setting that chose ``size``, named in error messages.
    chunk: examples read from the source at once; each chunk is copied into
      the window's preallocated arrays, so no more than one window plus one
      chunk of examples is held while reading.

  Returns:
    `Windows` whose ``read(indices)`` returns ``{name: (len(indices), ...)
    array}`` (``steps_per_window`` still to be set with `Windows.for_batch`).

  Raises:
    ValueError: the source has no random access (an iterator, a
      ``tf.data.Dataset``), or ``size`` is out of range.
  """
  if not (hasattr(source, '__len__') and (
      hasattr(source, '__getitems__') or hasattr(source, '__getitem__'))):
    raise ValueError(
        f'{field}={size} reads the training data in windows, which needs a '
        f'data source with random access (len(source) and source[i], as '
        f'tfds.data_source gives); got a {type(source).__name__}. Read the '
        f'data with tfds.data_source, or set {field}=0 to hold all of it in '
        'memory.')
  names = dict(keys) if isinstance(keys, Mapping) else {k: k for k in keys}

  def fetch(idx):
    if hasattr(source, '__getitems__'):
      return source.__getitems__(idx)
    return [source[i] for i in idx]

  def read(indices):
    indices = np.asarray(indices, np.int64)
    out = None
    for start in range(0, len(indices), chunk):
      part = indices[start:start + chunk].tolist()
      items = fetch(part)
      if out is None:
        out = {name: np.empty((len(indices),) + np.shape(items[0][key]),
                              np.asarray(items[0][key]).dtype)
               for name, key in names.items()}
      for name, key in names.items():
        for j, item in enumerate(items):
          out[name][start + j] = item[key]
      del items
    return out

  return Windows(read=read, num_examples=len(source), size=int(size),
                 field=field)
