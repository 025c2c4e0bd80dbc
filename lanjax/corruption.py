"""Input corruption, eq. (2) of Grimm et al.: ``x~ = A(x) * eta + (1 - A(x)) * x``."""

from __future__ import annotations

import jax.numpy as jnp


def check_broadcastable(mask_shape, x_shape) -> None:
  """Raises ValueError unless a mask of ``mask_shape`` broadcasts to ``x_shape``.

  Broadcasting is allowed only *into* the input's shape (a 1-channel mask tiled
  over 3 channels is fine; a mask that would enlarge the input is not).
  """
  mask_shape, x_shape = tuple(mask_shape), tuple(x_shape)
  if len(mask_shape) > len(x_shape):
    raise ValueError(
        f'The mask A(x) has shape {mask_shape} with more axes than the input '
        f'x {x_shape}; A must produce a mask of the input\'s shape or one that '
        'broadcasts to it (e.g. one channel tiled over the input channels).')
  for m, d in zip(mask_shape[::-1], x_shape[::-1]):
    if m not in (1, d):
      raise ValueError(
          f'The mask A(x) of shape {mask_shape} does not broadcast to the input '
          f'x of shape {x_shape}: each mask axis must equal the input axis or '
          'be 1 (a mask with one channel is tiled over the input channels).')


def corrupt(x, mask, noise):
  r"""Corrupts ``x`` with ``noise`` where the attention mask is high (eq. 2).

  .. math::
    \tilde{x} = A(x) \odot \eta + (1 - A(x)) \odot x

  A mask of 0 returns ``x`` exactly and a mask of 1 returns ``noise`` exactly.

  Args:
    x: input, shape ``(..., *d)``.
    mask: attention mask in ``[0, 1]``, broadcastable to ``x`` (for example
      ``(B, H, W, 1)`` for an RGB input ``(B, H, W, 3)``). A concrete mask
      outside ``[0, 1]`` is rejected (eq. 2 would extrapolate); a traced one
      is not checked (see `lanjax.validation` for a checked mode).
    noise: a noise sample of ``x``'s shape.

  Returns:
    The corrupted input, of ``x``'s shape.

  Raises:
    TypeError if an argument is not an array (a list, dict, None);
    ValueError for a mask outside [0, 1] or shapes that do not fit.

  Example:
    >>> import jax.numpy as jnp
    >>> corrupt(jnp.array([1., 2.]), jnp.array([0., 1.]), jnp.array([9., 9.]))
    Array([1., 9.], dtype=float32)
  """
  from lanjax import validation  # pylint: disable=g-import-not-at-top
  validation.check_array(x, name='x')
  validation.check_array(mask, name='mask')
  validation.check_array(noise, name='noise')
  validation.check_mask(mask)
  check_broadcastable(jnp.shape(mask), jnp.shape(x))
  if jnp.shape(noise) != jnp.shape(x):
    raise ValueError(
        f'The noise sample has shape {jnp.shape(noise)} but the input x has '
        f'shape {jnp.shape(x)}; noise must have exactly the input\'s shape.')
  return mask * noise + (1 - mask) * x
