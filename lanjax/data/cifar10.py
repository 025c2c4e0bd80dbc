"""CIFAR-10 for the natural-image experiment of Grimm et al. (section 5.2, appendix B).

Layout (what `load_split` returns and the batch functions read):

* ``image``: ``uint8 (N, 32, 32, 3)``, RGB, stored as on disk (4x smaller
  than float32 on the device); batch functions turn it into ``float32`` in
  ``[0, 1]`` (`to_unit`) inside the jitted step;
* ``label``: ``int32 (N,)`` in ``[0, 10)``, names in `CLASS_NAMES`;
* ``index``: ``int32 (N,)``, each example's index in the official release.
  TFDS stores the examples shuffled; `load_split` puts them back in the
  official order (by the ``id`` feature, ``'train_00042'``), so that test
  indices 0-999 line up with ``lossless_subset.npz`` (see
  `load_lossless_subset`).

Where the data comes from (`load_split`), in order: a prepared TFDS data dir
(``data_dir``, else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``); the
prepared offline copy ``offline_data_dir`` (``../shared/tensorflow_datasets``
in the configs); a TFDS download (``download=True``, needs internet).

The offline copy is **not bit-exact**: its pixels are JPEG (quality 75)
reconstructions of the originals, about 30 dB PSNR. `data_note` says which
one a number comes from; put it next to every number (metrics.json
``data_note``).

Augmentation (appendix B: "small random affine transforms ... at train
time") is `random_affine`: rotation, scale and shift, applied with bilinear
sampling inside the jitted step.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lanjax import noise as noise_lib
from lanjax import validation
from lanjax.data import tfds_data

NAME = 'cifar10'
IMAGE_SHAPE = (32, 32, 3)
CLASS_NAMES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog',
               'horse', 'ship', 'truck')
# The columns of Fig. 4, in the paper's order ("horse, plane, truck, bird,
# ship, and deer").
FIG4_CLASSES = ('horse', 'airplane', 'truck', 'bird', 'ship', 'deer')

DATA_NOTE_OFFLINE_JPEG = (
    'CIFAR-10 from the offline TFDS copy in ../shared/tensorflow_datasets: '
    'official order and labels, but its pixels are JPEG (quality 75, 4:2:0) '
    'reconstructions of the originals (PSNR median 30.5 dB, mean absolute '
    'error 5.8 grey levels), not the bit-exact release; numbers measured on '
    'it may differ slightly from ones on the real CIFAR-10.')
DATA_NOTE_OFFICIAL = (
    'CIFAR-10 as prepared by TFDS from the official release (bit-exact).')


# ----------------------------------------------------------------------------
# Loading.


def data_note(data_dir: str) -> str:
  """Which CIFAR-10 a prepared TFDS data dir holds, as a sentence for reports.

  Reads ``<data_dir>/cifar10/<version>/dataset_info.json``: the offline copy
  says so in its description ("OFFLINE COPY", "JPEG"); anything else is
  taken to be TFDS's preparation of the official release.

  Returns:
    `DATA_NOTE_OFFLINE_JPEG` or `DATA_NOTE_OFFICIAL`.
  """
  root = os.path.join(os.path.abspath(os.path.expanduser(data_dir)), NAME)
  if os.path.isdir(root):
    for version in sorted(os.listdir(root), reverse=True):
      info = os.path.join(root, version, 'dataset_info.json')
      if os.path.isfile(info):
        with open(info) as fh:
          description = json.load(fh).get('description', '')
        if 'OFFLINE COPY' in description or 'JPEG' in description:
          return DATA_NOTE_OFFLINE_JPEG
        return DATA_NOTE_OFFICIAL
  return DATA_NOTE_OFFICIAL


def official_order(ids) -> Optional[tuple[np.ndarray, np.ndarray]]:
  """The permutation sorting examples by their official index, from TFDS ids.

  Args:
    ids: the ``id`` feature, strings like ``'train_00042'``.

  Returns:
    ``(order, index)``: ``order`` sorts the examples into the official order
    and ``index`` holds the official indices in that order; None where the
    ids are not all of that form (e.g. the random text of
    ``tfds.testing.mock_data``), in which case the source order is kept.
  """
  try:
    index = np.array([int(str(i).rsplit('_', 1)[1]) for i in ids], np.int64)
  except (IndexError, ValueError):
    return None
  if len(np.unique(index)) != len(index):
    return None
  order = np.argsort(index, kind='stable')
  return order, index[order]


def _read(split, limit, data_dir, offline_data_dir, download):
  """``(arrays, data_dir)`` from the first place that has CIFAR-10 (module
  docstring), or the error that says what to do."""
  keys = ('image', 'label', 'id')
  primary = tfds_data.resolve_data_dir(data_dir)
  tried = [primary]
  places = [primary]
  if offline_data_dir:
    offline = os.path.abspath(os.path.expanduser(offline_data_dir))
    tried.append(offline)
    places.append(offline)
  for place in places:
    try:
      return tfds_data.load_arrays(NAME, split, keys, data_dir=place,
                                   download=False, limit=limit), place
    except tfds_data.DatasetNotFoundError:
      continue
  if download:
    return tfds_data.load_arrays(NAME, split, keys, data_dir=primary,
                                 download=True, limit=limit), primary
  raise tfds_data.DatasetNotFoundError(
      f'CIFAR-10 is not prepared in {" nor in ".join(tried)}, and downloading '
      'is off. Fix it in one of these ways:\n'
      '  * on a machine with internet: --config.data.download=True (TFDS '
      'downloads and prepares the official release, ~170 MB);\n'
      '  * point at a prepared TFDS data dir: export TFDS_DATA_DIR=/path/to/'
      'tensorflow_datasets or --config.data.data_dir=... (offline: '
      '--config.data.offline_data_dir=$(realpath ../shared/'
      'tensorflow_datasets), a JPEG copy).')


def load_split(split: str, *, data_dir: Optional[str] = None,
               offline_data_dir: Optional[str] = None,
               download: bool = False,
               limit: Optional[int] = None) -> dict[str, np.ndarray]:
  """Reads one CIFAR-10 split into NumPy arrays, in the official order.

  Args:
    split: ``'train'`` or ``'test'``.
    data_dir: a TFDS data dir ('' or None: ``$TFDS_DATA_DIR``, else
      ``~/tensorflow_datasets``).
    offline_data_dir: a prepared data dir to read when ``data_dir`` holds no
      CIFAR-10 (e.g. ``../shared/tensorflow_datasets``, a JPEG copy).
    download: let TFDS download and prepare it where neither dir has it.
    limit: read only the first ``limit`` stored examples (a random subset:
      TFDS stores them shuffled), then sort those.

  Returns:
    ``{'image': uint8 (N, 32, 32, 3), 'label': int32 (N,), 'index': int32
    (N,), 'data_note': str}``; see the module docstring.

  Raises:
    DatasetNotFoundError: no prepared copy and no download (says what to do).
    ValueError: the data is not CIFAR-10 shaped (names what was found).
  """
  if split not in ('train', 'test'):
    raise ValueError(f'split must be "train" or "test", got {split!r}.')
  arrays, source_dir = _read(split, limit, data_dir, offline_data_dir,
                             download)
  images = np.asarray(arrays['image'])
  labels = np.asarray(arrays['label']).astype(np.int32)
  if images.dtype != np.uint8 or images.shape[1:] != IMAGE_SHAPE:
    raise ValueError(
        f'CIFAR-10 {split} images in {source_dir} have dtype {images.dtype} '
        f'and shape {images.shape}; expected uint8 (N, 32, 32, 3). The data '
        'dir holds something else under the name cifar10: point data_dir at '
        'a TFDS preparation of CIFAR-10.')
  validation.check_range(
      labels, low=0, high=len(CLASS_NAMES) - 1, name=f'CIFAR-10 {split} labels',
      hint='CIFAR-10 has 10 classes, labels 0-9.')
  order = official_order(arrays['id'])
  if order is None:
    index = np.arange(len(labels), dtype=np.int32)
  else:
    perm, index = order
    images, labels = images[perm], labels[perm]
  return {'image': images, 'label': labels, 'index': index.astype(np.int32),
          'data_note': data_note(source_dir)}


def load_lossless_subset(path: str) -> dict[str, np.ndarray]:
  """The 5,000 bit-exact originals in ``../shared/data/cifar10``.

  Returns:
    ``{'train_image': uint8 (4000, 32, 32, 3), 'train_label': int32 (4000,),
    'test_image': uint8 (1000, 32, 32, 3), 'test_label': int32 (1000,)}``:
    official train indices 0-3999 and test indices 0-999.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f'No lossless CIFAR-10 subset at {path}; it is '
        '../shared/data/cifar10/lossless_subset.npz where ../shared exists.')
  with np.load(path) as d:
    return {'train_image': d['x_train_0_4000'],
            'train_label': d['y_train_0_4000'].astype(np.int32),
            'test_image': d['x_test_0_1000'],
            'test_label': d['y_test_0_1000'].astype(np.int32)}


def psnr(a, b) -> np.ndarray:
  """Per-image PSNR in dB of uint8 images ``a`` vs ``b`` ``(N, H, W, C)``."""
  diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
  mse = (diff ** 2).reshape(len(diff), -1).mean(-1)
  with np.errstate(divide='ignore'):
    return 10.0 * np.log10(255.0 ** 2 / mse)


def jpeg_effect(predict: Callable, jpeg_images, original_images,
                labels) -> dict[str, float]:
  """How the offline JPEG copy changes F: accuracy on both, and agreement.

  Args:
    predict: ``predict(x) -> logits (N, 10)`` for float images in [0, 1].
    jpeg_images: uint8 ``(N, 32, 32, 3)`` from the offline copy.
    original_images: the same examples, bit-exact (`load_lossless_subset`).
    labels: ``(N,)`` int labels.

  Returns:
    ``{'accuracy_jpeg', 'accuracy_original', 'prediction_agreement',
    'psnr_median_db', 'num_examples'}``.
  """
  if np.shape(jpeg_images) != np.shape(original_images):
    raise ValueError(
        f'jpeg_images {np.shape(jpeg_images)} and original_images '
        f'{np.shape(original_images)} must hold the same examples.')
  pj = np.asarray(jnp.argmax(predict(to_unit(jpeg_images)), -1))
  po = np.asarray(jnp.argmax(predict(to_unit(original_images)), -1))
  labels = np.asarray(labels)
  return {'accuracy_jpeg': float((pj == labels).mean()),
          'accuracy_original': float((po == labels).mean()),
          'prediction_agreement': float((pj == po).mean()),
          'psnr_median_db': float(np.median(psnr(jpeg_images,
                                                 original_images))),
          'num_examples': int(len(labels))}


def to_unit(images):
  """uint8 images ``(..., 32, 32, 3)`` -> float32 in ``[0, 1]`` (jit-safe)."""
  return jnp.asarray(images).astype(jnp.float32) / 255.0


def _to_unit_transform(key, draws):
  del key
  return to_unit(draws)


def bootstrap_noise(images) -> noise_lib.BootstrapNoise:
  """Bootstrapped noise: training images (uint8 pool, float draws in [0, 1]).

  Args:
    images: uint8 ``(N, 32, 32, 3)`` training images.

  Returns:
    A `lanjax.BootstrapNoise` whose draws are float32 in ``[0, 1]``.
  """
  if np.asarray(images).dtype != np.uint8:
    raise ValueError(
        f'bootstrap_noise takes the uint8 images of `load_split` (it scales '
        f'draws to [0, 1]); got dtype {np.asarray(images).dtype}. For float '
        'images use lanjax.BootstrapNoise(images) directly.')
  return noise_lib.BootstrapNoise(jnp.asarray(images),
                                  transform=_to_unit_transform)


def select_by_class(labels, classes: Sequence[str] = FIG4_CLASSES, *,
                    rows: int = 4, predictions=None) -> np.ndarray:
  """Indices for a Fig. 4 grid: ``rows`` examples of each class, one column each.

  The first examples of each class in the given order (deterministic);
  with ``predictions`` only correctly classified ones.

  Returns:
    int ``(rows, len(classes))`` indices into ``labels``.

  Raises:
    ValueError if a class is unknown or has fewer than ``rows`` examples.
  """
  labels = np.asarray(labels)
  ok = np.ones(len(labels), bool) if predictions is None else (
      np.asarray(predictions) == labels)
  out = np.zeros((rows, len(classes)), np.int64)
  for j, name in enumerate(classes):
    if name not in CLASS_NAMES:
      raise ValueError(f'Unknown CIFAR-10 class {name!r}; the classes are '
                       f'{", ".join(CLASS_NAMES)}.')
    idx = np.flatnonzero((labels == CLASS_NAMES.index(name)) & ok)
    if len(idx) < rows:
      raise ValueError(
          f'Only {len(idx)} {"correctly classified " if predictions is not None else ""}'
          f'examples of class {name!r} for {rows} rows: pass more examples '
          'or fewer rows.')
    out[:, j] = idx[:rows]
  return out


# ----------------------------------------------------------------------------
# Augmentation: small random affine transforms.


@dataclasses.dataclass(frozen=True)
class AffineRange:
  """Ranges of the random affine transforms (uniform in each).

  Attributes:
    max_rotation_deg: rotation in ``[-r, r]`` degrees.
    max_scale_change: zoom factor in ``[1 - s, 1 + s]``.
    max_shift: shift of the content in ``[-t, t]`` pixels along each axis.
  """
  max_rotation_deg: float = 10.0
  max_scale_change: float = 0.1
  max_shift: float = 3.0

  def __post_init__(self):
    for name in ('max_rotation_deg', 'max_scale_change', 'max_shift'):
      if not getattr(self, name) >= 0:
        raise ValueError(f'AffineRange.{name} must be >= 0, got '
                         f'{getattr(self, name)}.')
    if self.max_scale_change >= 1:
      raise ValueError('AffineRange.max_scale_change must be < 1 (a zoom '
                       f'factor stays positive), got {self.max_scale_change}.')


def affine_matrices(rotation, scale, shift):
  r"""Inverse maps of content transforms, for `affine_transform`.

  The content is rotated by ``rotation`` (radians, counter-clockwise as
  displayed) and scaled by ``scale`` about the image centre, then shifted by
  ``shift = (rows, cols)`` pixels. The returned matrix maps an *output*
  pixel ``p = (row, col, 1)`` to the input location it reads:

  .. math:: p_{in} = \frac{1}{s} R(\theta)^{-1} (p_{out} - c - t) + c

  Args:
    rotation: ``(B,)`` radians.
    scale: ``(B,)`` zoom factors (> 0).
    shift: ``(B, 2)`` pixels, (down, right).

  Returns:
    ``(B, 2, 3)`` matrices in pixel coordinates relative to the image centre
    ``c`` (any image size; `affine_transform` adds the centre).
  """
  rotation = jnp.asarray(rotation, jnp.float32)
  scale = jnp.asarray(scale, jnp.float32)
  shift = jnp.asarray(shift, jnp.float32)
  cos, sin = jnp.cos(rotation), jnp.sin(rotation)
  # Counter-clockwise on screen, in (row, col) coordinates with rows down,
  # is R = [[cos, -sin], [sin, cos]]; its inverse, divided by the scale:
  inv = jnp.stack([jnp.stack([cos, sin], -1),
                   jnp.stack([-sin, cos], -1)], -2) / scale[:, None, None]
  offset = -jnp.einsum('bij,bj->bi', inv, shift)
  return jnp.concatenate([inv, offset[:, :, None]], -1)


def affine_transform(images, matrices, *, mode: str = 'edge'):
  """Warps each image by its affine map, with bilinear sampling (jit-safe).

  Args:
    images: ``(B, H, W, C)`` floats.
    matrices: ``(B, 2, 3)``: output pixel (row, col), relative to the image
      centre ``((H-1)/2, (W-1)/2)``, -> input location relative to the centre
      (`affine_matrices`). The identity ``[[1, 0, 0], [0, 1, 0]]`` returns
      the images unchanged.
    mode: outside the input, ``'edge'`` repeats the border pixels,
      ``'constant'`` reads zeros.

  Returns:
    ``(B, H, W, C)``, same dtype.
  """
  if mode not in ('edge', 'constant'):
    raise ValueError(f'mode must be "edge" or "constant", got {mode!r}.')
  b, h, w, c = images.shape
  centre = jnp.array([(h - 1) / 2, (w - 1) / 2], jnp.float32)
  rows, cols = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32),
                            jnp.arange(w, dtype=jnp.float32), indexing='ij')
  out = jnp.stack([rows, cols], -1).reshape(-1, 2) - centre  # (HW, 2)
  src = (jnp.einsum('bij,pj->bpi', matrices[:, :, :2], out)
         + matrices[:, None, :, 2] + centre)  # (B, HW, 2)
  r0 = jnp.floor(src[..., 0])
  c0 = jnp.floor(src[..., 1])
  fr = (src[..., 0] - r0)[..., None]
  fc = (src[..., 1] - c0)[..., None]
  flat = images.reshape(b, h * w, c)

  def read(r, col):
    inside = (r >= 0) & (r <= h - 1) & (col >= 0) & (col <= w - 1)
    ri = jnp.clip(r, 0, h - 1).astype(jnp.int32)
    ci = jnp.clip(col, 0, w - 1).astype(jnp.int32)
    v = jnp.take_along_axis(flat, (ri * w + ci)[..., None], axis=1)
    if mode == 'constant':
      v = jnp.where(inside[..., None], v, jnp.zeros((), v.dtype))
    return v

  top = read(r0, c0) * (1 - fc) + read(r0, c0 + 1) * fc
  bottom = read(r0 + 1, c0) * (1 - fc) + read(r0 + 1, c0 + 1) * fc
  value = top * (1 - fr) + bottom * fr
  return value.reshape(b, h, w, c).astype(images.dtype)


def random_affine(key, images, augment: AffineRange = AffineRange(), *,
                  mode: str = 'edge'):
  """Applies an independent random small affine transform to each image.

  Args:
    key: a PRNG key.
    images: ``(B, H, W, C)`` floats.
    augment: the ranges of rotation, scale and shift.
    mode: border handling (`affine_transform`).

  Returns:
    ``(B, H, W, C)`` transformed images.
  """
  b = images.shape[0]
  k_rot, k_scale, k_shift = jax.random.split(key, 3)
  rot = math.radians(augment.max_rotation_deg) * jax.random.uniform(
      k_rot, (b,), minval=-1.0, maxval=1.0)
  scale = 1.0 + augment.max_scale_change * jax.random.uniform(
      k_scale, (b,), minval=-1.0, maxval=1.0)
  shift = augment.max_shift * jax.random.uniform(
      k_shift, (b, 2), minval=-1.0, maxval=1.0)
  return affine_transform(images, affine_matrices(rot, scale, shift),
                          mode=mode)


# ----------------------------------------------------------------------------
# Batches, made inside the jitted step.


def sample_batch(key, images, labels, batch_size: int, *,
                 augment: Optional[AffineRange] = None):
  """A training batch: examples drawn uniformly, optionally augmented.

  Args:
    key: a PRNG key.
    images: uint8 ``(N, 32, 32, 3)``.
    labels: int ``(N,)``.
    batch_size: ``B``.
    augment: random affine ranges, or None for none.

  Returns:
    ``{'x': float32 (B, 32, 32, 3) in [0, 1], 'y': int32 (B,)}``.
  """
  idx_key, aug_key = jax.random.split(key)
  idx = jax.random.randint(idx_key, (batch_size,), 0, images.shape[0])
  x = to_unit(jnp.take(images, idx, axis=0))
  if augment is not None:
    x = jnp.clip(random_affine(aug_key, x, augment), 0.0, 1.0)
  return {'x': x, 'y': jnp.take(labels, idx, axis=0)}


def batch_fn(batch_size: int, *, augment: Optional[AffineRange] = None):
  """F's ``batch_fn(data, key) -> {'x', 'y'}`` over ``data = {'image',
  'label'}`` (`load_split`'s layout), for `lanjax.training.classifier_update`."""
  def fn(data, key):
    return sample_batch(key, data['image'], data['label'], batch_size,
                        augment=augment)
  return fn


def lan_batch_fn(batch_size: int, *, augment: Optional[AffineRange] = None):
  """A's ``batch_fn(data, key) -> x (B, 32, 32, 3)``, for
  `lanjax.training.lan_update`; training images, not augmented by default."""
  def fn(data, key):
    return sample_batch(key, data['image'], data['label'], batch_size,
                        augment=augment)['x']
  return fn
