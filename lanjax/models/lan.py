"""The Latent Attention Network A of Grimm et al.: a fully-connected mask net."""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from lanjax.models import conv_ops


def _check_input(input_shape, x):
  if tuple(x.shape[1:]) != input_shape:
    raise ValueError(
        f'The LAN was built for inputs of shape {input_shape} per '
        f'example but got a batch of shape {tuple(x.shape)}.')


class LatentAttentionNetwork(nnx.Module):
  """``A(x) in [0, 1]^m``: FC layers with leaky ReLU, a sigmoid output.

  The paper's LANs (appendix A-D): e.g. for translated MNIST
  ``FC(100, l-ReLU), FC(784, sigmoid)`` reshaped to 28x28; for CIFAR-10 the
  output is a ``32x32x1`` mask tiled over the 3 channels, which here is left to
  broadcasting in `lanjax.corrupt`.

  Args:
    input_shape: shape of one input example, e.g. ``(28, 28, 1)``.
    hidden: widths of the hidden layers, e.g. ``(100,)``.
    mask_shape: shape of one mask; defaults to ``input_shape``. Use e.g.
      ``(32, 32, 1)`` for a 1-channel mask over an RGB input.
    negative_slope: slope of the leaky ReLU.
    rngs: NNX random streams for initialisation.

  Example:
    >>> from flax import nnx
    >>> import jax.numpy as jnp
    >>> a = LatentAttentionNetwork((28, 28, 1), (100,), rngs=nnx.Rngs(0))
    >>> a(jnp.zeros((2, 28, 28, 1))).shape
    (2, 28, 28, 1)
  """

  def __init__(self, input_shape: Sequence[int], hidden: Sequence[int], *,
               mask_shape: Sequence[int] | None = None,
               negative_slope: float = 0.01, rngs: nnx.Rngs):
    self.input_shape = tuple(int(d) for d in input_shape)
    self.mask_shape = tuple(int(d) for d in (mask_shape or input_shape))
    self.negative_slope = negative_slope
    widths = [math.prod(self.input_shape), *hidden, math.prod(self.mask_shape)]
    self.layers = nnx.List([
        nnx.Linear(i, o, rngs=rngs) for i, o in zip(widths[:-1], widths[1:])])

  def logits(self, x):
    """Pre-sigmoid mask logits, ``(B, *mask_shape)``."""
    _check_input(self.input_shape, x)
    h = x.reshape(x.shape[0], -1)
    for layer in self.layers[:-1]:
      h = jax.nn.leaky_relu(layer(h), self.negative_slope)
    h = self.layers[-1](h)
    return h.reshape((x.shape[0],) + self.mask_shape)

  def __call__(self, x):
    """The attention mask ``A(x)``, ``(B, *mask_shape)``, in ``[0, 1]``."""
    return jax.nn.sigmoid(self.logits(x))


class ConvLatentAttentionNetwork(nnx.Module):
  """``A(x) in [0, 1]^m`` for images: strided convolutions, a sigmoid mask.

  The same interface as `LatentAttentionNetwork` (``logits``, ``__call__``,
  ``input_shape``, ``mask_shape``) with a convolutional inductive bias: each
  conv (``kernel_size``, stride 2, leaky ReLU) halves the resolution, a 1x1
  conv gives the mask logits at the coarsest resolution, and these are
  resized (bilinear) to ``mask_shape``. The same filters see every position,
  so what makes a region worth keeping is learnt once for all positions,
  where an FC A must learn it anew at each one (on MNIST-SDC, 9 segments).
  The receptive field of the coarsest layer is
  ``1 + (kernel_size - 1) * (2^L - 1)`` pixels for L convs (29 for the
  default: about one MNIST digit).

  Args:
    input_shape: shape of one image, ``(H, W, C)``.
    features: channels of the strided convs, e.g. ``(16, 32, 32)``.
    kernel_size: the convs' kernel size.
    mask_shape: ``(H', W', C')``; defaults to ``input_shape``. E.g.
      ``(H, W, 1)``: one mask channel over all of the image's channels.
    negative_slope: slope of the leaky ReLU.
    rngs: NNX random streams for initialisation.

  Example:
    >>> from flax import nnx
    >>> import jax.numpy as jnp
    >>> a = ConvLatentAttentionNetwork((84, 84, 1), (16, 32, 32),
    ...                                rngs=nnx.Rngs(0))
    >>> a(jnp.zeros((2, 84, 84, 1))).shape
    (2, 84, 84, 1)
  """

  def __init__(self, input_shape: Sequence[int],
               features: Sequence[int] = (16, 32, 32), *,
               kernel_size: int = 5, mask_shape: Sequence[int] | None = None,
               negative_slope: float = 0.01, rngs: nnx.Rngs):
    self.input_shape = tuple(int(d) for d in input_shape)
    self.mask_shape = tuple(int(d) for d in (mask_shape or input_shape))
    if len(self.input_shape) != 3 or len(self.mask_shape) != 3:
      raise ValueError(
          'A convolutional LAN needs images: input_shape and mask_shape '
          f'(H, W, C), got {self.input_shape} and {self.mask_shape}; use '
          'LatentAttentionNetwork (the FC A) for other inputs.')
    if not features:
      raise ValueError('A convolutional LAN needs at least one conv: '
                       'features is empty.')
    self.negative_slope = negative_slope
    widths = [self.input_shape[-1], *(int(f) for f in features)]
    k = int(kernel_size)
    self.convs = nnx.List([
        nnx.Conv(i, o, (k, k), strides=(2, 2), padding='SAME', rngs=rngs)
        for i, o in zip(widths[:-1], widths[1:])])
    self.head = nnx.Conv(widths[-1], self.mask_shape[-1], (1, 1), rngs=rngs)

  def logits(self, x):
    """Pre-sigmoid mask logits, ``(B, *mask_shape)``."""
    _check_input(self.input_shape, x)
    h = x
    for conv in self.convs:
      h = jax.nn.leaky_relu(conv_ops.conv(conv, h), self.negative_slope)
    h = conv_ops.conv(self.head, h)
    return jax.image.resize(h, (x.shape[0],) + self.mask_shape, 'linear')

  def __call__(self, x):
    """The attention mask ``A(x)``, ``(B, *mask_shape)``, in ``[0, 1]``."""
    return jax.nn.sigmoid(self.logits(x))
