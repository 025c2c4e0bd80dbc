"""The translated-MNIST domain of Grimm et al. (section 4, appendix A).

Each 28x28 MNIST digit is scaled down (to 12x12 by default) and placed at a
uniformly random position on a blank 28x28 canvas, with fresh placements every
time a batch is drawn. Everything here is a pure, jit-safe JAX function; the
digit's box (its top-left corner) is returned for evaluation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def resize_digits(images, size: int):
  """Scales ``(N, 28, 28[, 1])`` images in [0, 1] to ``(N, size, size)``."""
  images = jnp.asarray(images, jnp.float32)
  if images.ndim == 4:
    images = images[..., 0]
  out = jax.image.resize(images, (images.shape[0], size, size), 'linear',
                         antialias=True)
  return jnp.clip(out, 0.0, 1.0)


def allowed_positions(canvas: int, digit: int, *,
                      exclude_corner: int = 0) -> np.ndarray:
  """Boolean ``(P, P)`` map of allowed top-left corners, ``P = canvas-digit+1``.

  Args:
    canvas: side of the canvas (28).
    digit: side of the digit (12).
    exclude_corner: if > 0, digits never overlap the bottom-right
      ``exclude_corner x exclude_corner`` region (Fig. 3c-d uses 12).
  """
  p = canvas - digit + 1
  allowed = np.ones((p, p), bool)
  if exclude_corner:
    start = canvas - exclude_corner  # first row/col of the excluded region
    rows = np.arange(p)[:, None] + digit > start
    cols = np.arange(p)[None, :] + digit > start
    allowed &= ~(rows & cols)
  return allowed


def sample_positions(key, num: int, allowed):
  """``(num, 2)`` int32 top-left corners drawn uniformly from ``allowed``.

  With a concrete (numpy) ``allowed`` map, one random integer per draw indexes
  the list of allowed corners; a traced map falls back to a categorical draw
  over all corners, which costs one random number per corner and draw.
  """
  if isinstance(allowed, jax.core.Tracer):
    logits = jnp.where(allowed.reshape(-1), 0.0, -jnp.inf)
    flat = jax.random.categorical(key, logits, shape=(num,))
  else:
    allowed = np.asarray(allowed, bool)
    choices = np.flatnonzero(allowed)
    if choices.size == 0:
      raise ValueError('No allowed digit positions: the allowed map is all '
                       'False; check the canvas, digit and corner sizes.')
    pick = jax.random.randint(key, (num,), 0, choices.size)
    flat = jnp.asarray(choices, jnp.int32)[pick]
  width = allowed.shape[1]
  return jnp.stack([flat // width, flat % width], -1).astype(jnp.int32)


def place(digits, positions, canvas: int = 28):
  """Places ``(N, s, s)`` digits at ``(N, 2)`` top-left corners.

  Each canvas row (column) reads the digit row (column) it overlaps, or is
  zero: two small gathers and a select, which XLA runs several times faster
  than the scatter a vmapped ``dynamic_update_slice`` becomes on CPU, with
  the same values; like it, negative corners count from the end and corners
  are clamped to keep the digit inside.

  Returns:
    ``(N, canvas, canvas, 1)`` images.
  """
  s = digits.shape[-1]
  positions = jnp.asarray(positions, jnp.int32)
  positions = jnp.where(positions < 0, positions + canvas, positions)
  positions = jnp.clip(positions, 0, canvas - s)
  grid = jnp.arange(canvas, dtype=jnp.int32)[None, :]
  row = grid - positions[:, :1]  # (N, canvas): digit row at each canvas row
  col = grid - positions[:, 1:]
  zero = jnp.zeros((), digits.dtype)
  rows = jnp.take_along_axis(digits, jnp.clip(row, 0, s - 1)[:, :, None],
                             axis=1)  # (N, canvas, s)
  rows = jnp.where(((row >= 0) & (row < s))[:, :, None], rows, zero)
  out = jnp.take_along_axis(rows, jnp.clip(col, 0, s - 1)[:, None, :], axis=2)
  out = jnp.where(((col >= 0) & (col < s))[:, None, :], out, zero)
  return out[..., None]


def place_centred(digits, centre, canvas: int = 28):
  """Places all ``(N, s, s)`` digits (odd ``s``) centred at pixel ``centre``."""
  half = digits.shape[-1] // 2
  corner = jnp.asarray(centre, jnp.int32) - half
  return place(digits, jnp.broadcast_to(corner, (digits.shape[0], 2)), canvas)


def sample(key, digits, allowed, canvas: int = 28):
  """Places every digit of ``(..., s, s)`` at a random allowed position.

  Returns:
    ``(images (..., canvas, canvas, 1), corners (..., 2))``.
  """
  lead = digits.shape[:-2]
  flat = digits.reshape((-1,) + digits.shape[-2:])
  corners = sample_positions(key, flat.shape[0], allowed)
  images = place(flat, corners, canvas)
  return (images.reshape(lead + images.shape[1:]),
          corners.reshape(lead + (2,)))


def sample_batch(key, digits, labels, batch_size: int, allowed,
                 canvas: int = 28):
  """A training batch: random digits at random allowed positions.

  Returns:
    ``{'x': (B, canvas, canvas, 1), 'y': (B,), 'corner': (B, 2)}``.
  """
  idx_key, pos_key = jax.random.split(key)
  idx = jax.random.randint(idx_key, (batch_size,), 0, digits.shape[0])
  x, corner = sample(pos_key, digits[idx], allowed, canvas)
  return {'x': x, 'y': labels[idx], 'corner': corner}
