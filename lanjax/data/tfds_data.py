"""TFDS datasets read with ``tfds.data_source`` (array_record, no TensorFlow).

Where a dataset is looked for, in order:

1. a prepared data dir: ``data_dir`` if given, else ``$TFDS_DATA_DIR``, else
   TFDS's default (``~/tensorflow_datasets``);
2. a manual dir of raw files (``manual_dir``): the dataset is prepared from it
   into the data dir (preparing needs TensorFlow, in requirements.txt);
3. a download, where ``download=True`` and there is internet.

If none works, `DatasetNotFoundError` says which of these to do.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np


class DatasetNotFoundError(FileNotFoundError):
  """A TFDS dataset is neither prepared, nor preparable from what was given."""


def resolve_data_dir(data_dir: Optional[str] = None) -> str:
  """The TFDS data dir used: argument, then $TFDS_DATA_DIR, then TFDS default."""
  if data_dir:
    return os.path.abspath(os.path.expanduser(data_dir))
  if os.environ.get('TFDS_DATA_DIR'):
    return os.path.abspath(os.path.expanduser(os.environ['TFDS_DATA_DIR']))
  return os.path.expanduser('~/tensorflow_datasets')


def data_source(name: str, split: str, *, data_dir: Optional[str] = None,
                manual_dir: Optional[str] = None, download: bool = False,
                builder_kwargs: Optional[dict] = None,
                raw_name: Optional[str] = None):
  """``tfds.data_source(name, split=split)``, preparing the dataset if needed.

  Datasets defined in lanjax (e.g. ``twenty_newsgroups``) are registered with
  TFDS when their module is imported (`lanjax.data.newsgroups`).

  Args:
    name: the TFDS dataset name.
    split: the split, e.g. ``'train'``.
    data_dir, manual_dir, download: see the module docstring.
    builder_kwargs: passed to ``tfds.builder`` (e.g. ``{'config': ...}``).
    raw_name: the folder of the raw files under ``../shared/data`` named in
      the error message's example (defaults to ``name``).

  Returns:
    A random-access data source (``len``, ``[i]``, ``__getitems__``).
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  data_dir = resolve_data_dir(data_dir)
  read = lambda: tfds.data_source(name, split=split, data_dir=data_dir,
                                  download=False,
                                  builder_kwargs=builder_kwargs)
  try:
    return read()
  except Exception as e:  # pylint: disable=broad-except
    builder = tfds.builder(name, data_dir=data_dir, **(builder_kwargs or {}))
    if builder.is_prepared():
      if split not in builder.info.splits:
        raise ValueError(
            f'The dataset {name!r} has no split {split!r}; it has: '
            f'{", ".join(builder.info.splits)}.') from e
      raise
    if manual_dir and not download and not (
        os.path.isdir(manual_dir) and os.listdir(manual_dir)):
      # Without its files TFDS would fall back to downloading (minutes of
      # retries without internet): stop here and say so.
      raise DatasetNotFoundError(_not_found_message(
          name, data_dir, manual_dir, download,
          f'The manual dir {os.path.abspath(manual_dir)} '
          + ('is empty.' if os.path.isdir(manual_dir) else
             'does not exist.'), raw_name=raw_name)) from None
    if not (manual_dir or download):
      raise DatasetNotFoundError(_not_found_message(
          name, data_dir, manual_dir, download, raw_name=raw_name)) from None
  try:
    builder.download_and_prepare(
        file_format='array_record',
        download_config=tfds.download.DownloadConfig(
            manual_dir=os.path.abspath(manual_dir) if manual_dir else None))
  except Exception as e:  # pylint: disable=broad-except
    raise DatasetNotFoundError(_not_found_message(
        name, data_dir, manual_dir, download,
        f'Preparing it failed: {type(e).__name__}: {e}',
        raw_name=raw_name)) from e
  return read()


def _not_found_message(name, data_dir, manual_dir, download, cause='', *,
                       raw_name=None):
  lines = [
      f'The TFDS dataset {name!r} is not prepared in the data dir {data_dir}.',
  ]
  if cause:
    lines.append(cause)
  lines += [
      'Fix it in one of these ways:',
      f'  * point TFDS at a prepared copy: export TFDS_DATA_DIR=/path/to/'
      f'tensorflow_datasets (e.g. TFDS_DATA_DIR=$(realpath '
      f'../shared/tensorflow_datasets)), or --config.data.data_dir=...;',
      f'  * prepare it from the raw files: --config.data.manual_dir=/path/to/'
      f'raw/{raw_name or name} (e.g. ../shared/data/{raw_name or name}; '
      'needs tensorflow-cpu);',
      '  * on a machine with internet: --config.data.download=True.',
  ]
  if manual_dir:
    lines.append(f'(manual dir tried: {manual_dir})')
  if download:
    lines.append('(download was allowed and tried)')
  return '\n'.join(lines)


def load_arrays(name: str, split: str, keys: Sequence[str], *,
                data_dir: Optional[str] = None,
                manual_dir: Optional[str] = None, download: bool = False,
                limit: Optional[int] = None,
                builder_kwargs: Optional[dict] = None,
                raw_name: Optional[str] = None) -> dict[str, np.ndarray]:
  """Reads a whole split into stacked NumPy arrays, one per feature key.

  Args:
    name: the TFDS dataset name, e.g. ``'mnist'``.
    split: the split, e.g. ``'train'``.
    keys: the features to read, e.g. ``('image', 'label')``.
    data_dir, manual_dir, download, builder_kwargs, raw_name: see
      `data_source`.
    limit: read only the first ``limit`` examples.

  Returns:
    ``{key: array}`` with the examples stacked on the first axis; text
    features (bytes or str) come as a 1-D object array of ``str``.
  """
  source = data_source(name, split, data_dir=data_dir, manual_dir=manual_dir,
                       download=download, builder_kwargs=builder_kwargs,
                       raw_name=raw_name)
  n = len(source) if limit is None else min(limit, len(source))
  try:
    items = source.__getitems__(list(range(n)))  # batched read: faster
  except TypeError:  # sources without a batched read (e.g. tfds mocks)
    items = [source[i] for i in range(n)]
  return {k: _stack([item[k] for item in items]) for k in keys}


def _stack(values) -> np.ndarray:
  """Stacks feature values; texts become an object array of str.

  (``np.stack`` of variable-length bytes would pad every text to the longest.)
  """
  if values and isinstance(values[0], (bytes, str, np.bytes_, np.str_)):
    out = np.empty(len(values), object)
    out[:] = [v.decode('utf-8') if isinstance(v, bytes) else str(v)
              for v in values]
    return out
  return np.stack([np.asarray(v) for v in values])
