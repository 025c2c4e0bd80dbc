"""Selective dependence classification (SDC): Pandey, Vashisht, Ramaswamy.

A mosaic instance has ``m`` segments; its label depends on one *foreground*
segment only (index ``i*``, never shown to training), drawn from the class
distribution ``D_y``; the other ``m - 1`` segments are drawn from the
background distribution ``D_0`` (Algorithm 1 of the paper):

.. code-block:: text

   i* ~ Uniform{0..m-1};  y ~ Uniform{0..k-1}
   x_i ~ D_0 (i != i*);   x_{i*} ~ D_{y+1}

Two families, both deterministic from a seed, both keeping ``i*`` (key
``'fg'``) with every instance:

* synthetic (section 4): ``d = 2`` Gaussians, k = 3 classes; the named
  configurations in `SYNTHETIC` include two where an *accurate* focus-classify
  model is known by construction to be non-interpretable. Layout:
  ``{'x': (N, m, d) float32, 'y': (N,) int32, 'fg': (N,) int32}``.
* image SDC (section 6.1): segments are TFDS images (MNIST-SDC, CIFAR-SDC),
  foreground from ``fg_classes`` (label ``y`` = position in ``fg_classes``),
  background from every other class. A split is kept as the base images plus
  the indices of each mosaic's segments, ``{'images': (P, s, s, c) uint8,
  'idx': (N, m) int32, 'y': (N,) int32, 'fg': (N,) int32}`` (40,000 CIFAR
  mosaics as pixels would be 4.4 GB of float32); `mosaic` assembles the
  ``(N, g*s, g*s, c)`` float32 image in ``[0, 1]``, segments laid out
  row-major on a ``g x g`` grid (segment ``i`` at row ``i // g``, column
  ``i % g``), inside the jitted step (`sample_batch`).

Departure from the paper: train mosaics are built from the dataset's train
images and test mosaics from its test images (no image is shared), where the
paper draws 40,000 mosaics and sets 10,000 aside.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lanjax import validation

# ----------------------------------------------------------------------------
# Synthetic SDC (d = 2).

# Row 0 is the background D_0, rows 1..k the foreground classes D_1..D_k.
SYNTHETIC = {
    # Background below, foreground above: the linear focus f(x) = x_2 ranks
    # the foreground first (FT ~ 1); a well-posed, interpretable task.
    'separable': {
        'means': ((0.0, -3.0), (-3.0, 2.0), (0.0, 3.0), (3.0, 2.0)),
        'stds': (0.6, 0.6, 0.6, 0.6),
    },
    # Section 4.2 (second error mode): the background mean lies strictly
    # inside the triangle of the foreground means, so no *linear* focus net
    # can rank every class's foreground above the background (FT of any
    # linear f stays near 2/3), while a linear g on the attended input and a
    # nonlinear f (e.g. the distance from the origin) are both accurate. An
    # accurate FCAM with linear f is non-interpretable by construction.
    'no_linear_focus': {
        'means': ((0.0, 0.0), (-3.0, -2.0), (3.0, -2.0), (0.0, 3.5)),
        'stds': (0.5, 0.5, 0.5, 0.5),
    },
    # Section 4.3 (third error mode): a tight background far from the
    # foreground classes, which differ along x_2. The *uniform* attention
    # alpha = 1/m (a constant focus net, FT = 1/m with random tie-breaking)
    # already gives an attended input whose x_2 separates the classes, so a
    # classifier g alone is accurate: accuracy does not need interpretability.
    # A good focus exists too (f(x) = -x_1).
    'uniform_attention_suffices': {
        'means': ((2.0, 0.0), (-2.0, -4.5), (-2.0, 0.0), (-2.0, 4.5)),
        'stds': (0.2, 0.2, 0.2, 0.2),
    },
}


def synthetic_spec(name: str) -> dict[str, np.ndarray]:
  """``{'means': (k+1, d), 'stds': (k+1, d)}`` float32 of a `SYNTHETIC` entry."""
  if name not in SYNTHETIC:
    raise ValueError(
        f'Unknown synthetic SDC configuration {name!r}; choose one of '
        f'{sorted(SYNTHETIC)} or pass means and stds.')
  spec = SYNTHETIC[name]
  return _spec_arrays(spec['means'], spec['stds'])


def _spec_arrays(means, stds):
  means = np.asarray(means, np.float32)
  if means.ndim != 2 or means.shape[0] < 2:
    raise ValueError(
        f'means has shape {means.shape}; it must be (k + 1, d): row 0 the '
        'background mean, rows 1..k the foreground class means (k >= 1).')
  stds = np.asarray(stds, np.float32)
  if stds.ndim == 1 and stds.shape[0] == means.shape[0]:
    stds = stds[:, None]  # one std per distribution
  if stds.ndim <= 2:
    try:
      stds = np.broadcast_to(stds, means.shape)
    except ValueError:
      pass
  if stds.shape != means.shape:
    raise ValueError(
        f'stds has shape {stds.shape}; it must be a scalar, (k + 1,) or the '
        f'shape of means {means.shape}.')
  if not (stds > 0).all():
    raise ValueError(f'stds must be positive, got {stds.tolist()}.')
  return {'means': means, 'stds': np.array(stds)}


def sample_synthetic(key, num: int, *, means, stds,
                     num_segments: int = 9) -> dict[str, jax.Array]:
  """Draws ``num`` synthetic SDC instances with Gaussian D_0..D_k (Alg. 1).

  Pure and jit-safe (``num`` and ``num_segments`` static); the foreground
  index, the label, the foreground draw and the background draws come from
  four independent keys split from ``key``.

  Args:
    key: a PRNG key.
    num: number of instances ``N``.
    means: ``(k + 1, d)``; row 0 is the background mean.
    stds: ``(k + 1, d)`` standard deviations (axis-aligned Gaussians).
    num_segments: ``m``.

  Returns:
    ``{'x': (N, m, d) float32, 'y': (N,) int32 in [0, k), 'fg': (N,) int32
    in [0, m)}``.

  Example:
    >>> import jax
    >>> spec = synthetic_spec('separable')
    >>> s = sample_synthetic(jax.random.key(0), 4, **spec)
    >>> s['x'].shape, s['y'].shape
    ((4, 9, 2), (4,))
  """
  means = jnp.asarray(means, jnp.float32)
  stds = jnp.asarray(stds, jnp.float32)
  k = means.shape[0] - 1
  fg_key, y_key, fg_x_key, bg_key = jax.random.split(key, 4)
  fg = jax.random.randint(fg_key, (num,), 0, num_segments, jnp.int32)
  y = jax.random.randint(y_key, (num,), 0, k, jnp.int32)
  d = means.shape[1]
  background = means[0] + stds[0] * jax.random.normal(
      bg_key, (num, num_segments, d))
  foreground = means[y + 1] + stds[y + 1] * jax.random.normal(
      fg_x_key, (num, d))
  is_fg = (jnp.arange(num_segments) == fg[:, None])[..., None]
  x = jnp.where(is_fg, foreground[:, None, :], background)
  return {'x': x, 'y': y, 'fg': fg}


_sample_synthetic_jit = jax.jit(sample_synthetic,
                                static_argnames=('num', 'num_segments'))


def make_synthetic(name: Optional[str] = 'separable', *, num_train: int = 200,
                   num_test: int = 10_000, num_segments: int = 9,
                   seed: int = 0, means=None, stds=None) -> dict:
  """A synthetic SDC task: ``{'train': {...}, 'test': {...}, 'spec': {...}}``.

  The paper's section-4 illustrations train on 200 mosaics of ``m = 9``.

  Args:
    name: a `SYNTHETIC` configuration (ignored when ``means`` is given).
    num_train, num_test: instances per split.
    num_segments: ``m``.
    seed: the splits are drawn from ``fold_in(key(seed), 0 or 1)``.
    means, stds: a custom configuration (see `sample_synthetic`).

  Returns:
    Splits as in `sample_synthetic` (NumPy arrays) and the ``spec`` used.
  """
  _check_positive(num_train=num_train, num_test=num_test,
                  num_segments=num_segments)
  spec = (_spec_arrays(means, stds if stds is not None else 1.0)
          if means is not None else synthetic_spec(name))
  root = jax.random.key(seed)
  out = {'spec': spec}
  for i, (split, n) in enumerate((('train', num_train), ('test', num_test))):
    s = _sample_synthetic_jit(jax.random.fold_in(root, i), n,
                              num_segments=num_segments, **spec)
    out[split] = {k: np.asarray(v) for k, v in s.items()}
    validation.check_finite(out[split]['x'], name=f'synthetic SDC {split} x')
  return out


# ----------------------------------------------------------------------------
# Image SDC: mosaics of TFDS images.


def make_mosaic_indices(labels, *, fg_classes: Sequence[int], num: int,
                        num_segments: int = 9, seed: int = 0,
                        bg_classes: Optional[Sequence[int]] = None
                        ) -> dict[str, np.ndarray]:
  """Algorithm 1 over a labelled image pool: which image goes in which segment.

  Background segments are drawn uniformly (with replacement) from the images
  of ``bg_classes`` (default: every class not in ``fg_classes``); the
  foreground segment uniformly from the images of class ``fg_classes[y]``.

  Args:
    labels: ``(P,)`` int labels of the image pool.
    fg_classes: the ``k`` foreground classes; label ``y`` of a mosaic is the
      position of its foreground image's class in this tuple.
    num: number of mosaics ``N``.
    num_segments: ``m``.
    seed: NumPy seed; the same seed gives the same mosaics.
    bg_classes: the background classes (must not meet ``fg_classes``).

  Returns:
    ``{'idx': (N, m) int32 pool indices, 'y': (N,) int32, 'fg': (N,) int32}``.
  """
  labels = np.asarray(labels).reshape(-1)
  fg_classes = tuple(int(c) for c in fg_classes)
  _check_positive(num=num, num_segments=num_segments)
  bg_pool, fg_pools = _class_pools(labels, fg_classes, bg_classes)
  rng = np.random.default_rng(seed)
  fg = rng.integers(0, num_segments, num).astype(np.int32)
  y = rng.integers(0, len(fg_classes), num).astype(np.int32)
  idx = bg_pool[rng.integers(0, bg_pool.size, (num, num_segments))]
  fg_idx = np.empty(num, np.int64)
  for c, pool in enumerate(fg_pools):
    sel = np.flatnonzero(y == c)
    fg_idx[sel] = pool[rng.integers(0, pool.size, sel.size)]
  idx[np.arange(num), fg] = fg_idx
  return {'idx': idx.astype(np.int32), 'y': y, 'fg': fg}


def background_indices(labels, *, fg_classes: Sequence[int], num: int,
                       num_segments: int = 9, seed: int = 0,
                       bg_classes: Optional[Sequence[int]] = None
                       ) -> np.ndarray:
  """Mosaics of background images only: every segment drawn from D_0.

  The noise H of the LAN that holds no foreground: a corrupted segment
  becomes a background image, never a foreground-class one (`MosaicNoise`
  over these indices). Draws only on the pool's class labels, never on a
  mosaic's ``i*``.

  Args:
    labels, fg_classes, num, num_segments, seed, bg_classes: as in
      `make_mosaic_indices`.

  Returns:
    ``(N, m)`` int32 pool indices, each of a ``bg_classes`` image.
  """
  labels = np.asarray(labels).reshape(-1)
  _check_positive(num=num, num_segments=num_segments)
  bg_pool, _ = _class_pools(labels, tuple(int(c) for c in fg_classes),
                            bg_classes)
  rng = np.random.default_rng(seed)
  return bg_pool[rng.integers(0, bg_pool.size, (num, num_segments))].astype(
      np.int32)


def _class_pools(labels, fg_classes, bg_classes):
  """``(background pool, [foreground pool per class])`` of image indices."""
  if len(set(fg_classes)) != len(fg_classes) or not fg_classes:
    raise ValueError(f'fg_classes must be distinct classes, got {fg_classes}.')
  if bg_classes is None:
    bg_mask = ~np.isin(labels, fg_classes)
  else:
    overlap = set(fg_classes) & {int(c) for c in bg_classes}
    if overlap:
      raise ValueError(
          f'bg_classes and fg_classes share {sorted(overlap)}: a background '
          'segment of a foreground class would make the label ambiguous.')
    bg_mask = np.isin(labels, tuple(bg_classes))
  bg_pool = np.flatnonzero(bg_mask)
  fg_pools = [np.flatnonzero(labels == c) for c in fg_classes]
  empty = [c for c, p in zip(fg_classes, fg_pools) if p.size == 0]
  if empty or bg_pool.size == 0:
    raise ValueError(
        f'The image pool of {labels.size} labels has no images of '
        + (f'foreground classes {empty}' if empty else 'any background class')
        + f' (classes present: {sorted(set(labels.tolist()))}); check '
        'fg_classes and the data (or a too small train/test limit).')
  return bg_pool, fg_pools


def grid_size(num_segments: int) -> int:
  """``g`` with ``g * g == num_segments`` (image mosaics are square grids)."""
  g = math.isqrt(int(num_segments))
  if g * g != num_segments:
    raise ValueError(
        f'num_segments={num_segments} is not a square; image mosaics lay the '
        'segments out on a g x g grid (e.g. 9 = 3 x 3).')
  return g


def mosaic_from_segments(segments):
  """``(..., m, s, s, c)`` segments -> ``(..., g*s, g*s, c)`` mosaic images."""
  *lead, m, s, t, c = segments.shape
  g = grid_size(m)
  x = segments.reshape(*lead, g, g, s, t, c)
  x = jnp.moveaxis(x, -3, -4)  # (..., g, s, g, t, c)
  return x.reshape(*lead, g * s, g * t, c)


def segments_from_mosaic(x, grid: int):
  """``(..., g*s, g*s, c)`` mosaics -> ``(..., g*g, s, s, c)`` segments.

  The inverse of `mosaic_from_segments`; segment ``i`` is the block at grid
  row ``i // g`` and column ``i % g``.
  """
  *lead, h, w, c = x.shape
  if h % grid or w % grid:
    raise ValueError(
        f'A mosaic of {h}x{w} pixels does not split into a {grid}x{grid} '
        'grid of equal segments.')
  s, t = h // grid, w // grid
  x = x.reshape(*lead, grid, s, grid, t, c)
  x = jnp.moveaxis(x, -4, -3)  # (..., g, g, s, t, c)
  return x.reshape(*lead, grid * grid, s, t, c)


def mosaic(images, idx):
  """Assembles mosaic images from the pool; jit-safe.

  Args:
    images: ``(P, s, s, c)`` pool, uint8 (scaled by 1/255) or float in [0, 1].
    idx: ``(..., m)`` int pool indices, segment ``i`` at grid row ``i // g``,
      column ``i % g`` (``g = sqrt(m)``).

  Returns:
    ``(..., g*s, g*s, c)`` float32 in ``[0, 1]``.
  """
  segs = jnp.asarray(images)[idx]
  if segs.dtype == jnp.uint8:
    segs = segs.astype(jnp.float32) / 255.0
  return mosaic_from_segments(segs.astype(jnp.float32))


def load_image_sdc(name: str = 'mnist', *, fg_classes: Sequence[int] = (0, 1, 2),
                   num_train: int = 30_000, num_test: int = 10_000,
                   num_segments: int = 9, seed: int = 0,
                   data_dir: Optional[str] = None,
                   manual_dir: Optional[str] = None, download: bool = False,
                   train_limit: Optional[int] = None,
                   test_limit: Optional[int] = None) -> dict:
  """MNIST-SDC / CIFAR-SDC from TFDS (`lanjax.data.tfds_data.load_arrays`).

  Section 6.1: CIFAR-10 segments (d = 3072), foreground from airplane,
  automobile and bird (classes 0, 1, 2), background from the other seven,
  ``m = 9``, 40,000 mosaics of which 10,000 are held out. MNIST-SDC is the
  same construction on MNIST digits (foreground 0, 1, 2 by default).

  Args:
    name: the TFDS name, ``'mnist'`` or ``'cifar10'`` (any dataset with
      ``image`` (uint8) and ``label`` features works).
    fg_classes: the foreground classes, in label order.
    num_train, num_test: mosaics per split (train mosaics from the train
      images, test mosaics from the test images).
    num_segments: ``m`` (a square).
    seed: the mosaics of split ``j`` use NumPy seed ``(seed, j)``.
    data_dir, manual_dir, download: see `lanjax.data.tfds_data`.
    train_limit, test_limit: read only the first images of each split.

  Returns:
    ``{'train': split, 'test': split}`` with ``split = {'images': (P, s, s,
    c) uint8, 'labels': (P,) int32, 'idx': (N, m) int32, 'y': (N,) int32,
    'fg': (N,) int32}``.
  """
  from lanjax.data import tfds_data  # pylint: disable=g-import-not-at-top
  grid_size(num_segments)
  out = {}
  for j, (split, num, limit) in enumerate((('train', num_train, train_limit),
                                           ('test', num_test, test_limit))):
    arrays = tfds_data.load_arrays(
        name, split, ('image', 'label'), data_dir=data_dir,
        manual_dir=manual_dir, download=download, limit=limit or None)
    images = arrays['image']
    if images.dtype != np.uint8 or images.ndim != 4:
      raise ValueError(
          f'{name} {split} images have dtype {images.dtype} and shape '
          f'{images.shape}; SDC expects uint8 images (P, s, s, c) as TFDS '
          'stores MNIST and CIFAR-10.')
    validation.check_range(images, low=0, high=255,
                           name=f'{name} {split} images')
    labels = arrays['label'].astype(np.int32)
    mosaics = make_mosaic_indices(
        labels, fg_classes=fg_classes, num=num, num_segments=num_segments,
        seed=int(np.random.SeedSequence([seed, j]).generate_state(1)[0]))
    out[split] = {'images': images, 'labels': labels, **mosaics}
  return out


def sample_batch(data, key, batch_size: int):
  """A training batch of a fixed SDC split; jit-safe (``batch_size`` static).

  Args:
    data: a split: synthetic ``{'x', 'y', 'fg'}`` or image ``{'images', 'idx',
      'y', 'fg', ...}``.
    key: PRNG key choosing the instances (uniformly, with replacement).
    batch_size: ``B``.

  Returns:
    ``{'x': (B, m, d) or (B, g*s, g*s, c) float32, 'y': (B,), 'fg': (B,)}``.
  """
  n = data['y'].shape[0]
  i = jax.random.randint(key, (batch_size,), 0, n)
  x = mosaic(data['images'], data['idx'][i]) if 'images' in data else (
      data['x'][i])
  return {'x': x, 'y': data['y'][i], 'fg': data['fg'][i]}


def instances(data, start: int = 0, stop: Optional[int] = None):
  """Instances ``start:stop`` of a split as ``{'x', 'y', 'fg'}`` (evaluation)."""
  sl = slice(start, stop)
  x = mosaic(data['images'], data['idx'][sl]) if 'images' in data else (
      jnp.asarray(data['x'][sl]))
  return {'x': x, 'y': jnp.asarray(data['y'][sl]),
          'fg': jnp.asarray(data['fg'][sl])}


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MosaicNoise:
  """Bootstrapped noise for image SDC: random training mosaics.

  `lanjax.noise.BootstrapNoise` for a split kept as base images plus
  indices: each of the ``K`` samples of each example is the mosaic of a
  training instance drawn uniformly with replacement, assembled on the fly
  (`mosaic`). A pytree, so the pool is a device buffer of the jitted step.

  Attributes:
    images: ``(P, s, s, c)`` uint8 (or float in [0, 1]) base images.
    idx: ``(N, m)`` int pool indices of the training mosaics.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> noise = MosaicNoise(jnp.zeros((5, 2, 2, 1), jnp.uint8),
    ...                     jnp.zeros((3, 9), jnp.int32))
    >>> noise.sample(jax.random.key(0), jnp.ones((4, 6, 6, 1)), 2).shape
    (2, 4, 6, 6, 1)
  """
  images: Any
  idx: Any

  def sample(self, key, x, num_samples: int):
    """``(K, *x.shape)`` random training mosaics."""
    if not isinstance(num_samples, int) or num_samples < 1:
      raise ValueError('The number of noise samples K must be a positive '
                       f'int, got {num_samples!r}.')
    i = jax.random.randint(key, (num_samples, x.shape[0]), 0,
                           self.idx.shape[0])
    eta = mosaic(self.images, self.idx[i])
    if eta.shape[2:] != tuple(x.shape[1:]):
      raise ValueError(
          f'Mosaic noise has shape {eta.shape[2:]} per example but the inputs '
          f'have {tuple(x.shape[1:])}; build the noise from the split the '
          'inputs are mosaics of.')
    return eta.astype(x.dtype)


def _check_positive(**values):
  for k, v in values.items():
    if int(v) < 1:
      raise ValueError(f'{k} must be a positive integer, got {v}.')
