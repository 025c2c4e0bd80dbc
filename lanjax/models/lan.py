"""The Latent Attention Network A of Grimm et al.: a fully-connected mask net."""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx


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
    if tuple(x.shape[1:]) != self.input_shape:
      raise ValueError(
          f'The LAN was built for inputs of shape {self.input_shape} per '
          f'example but got a batch of shape {tuple(x.shape)}.')
    h = x.reshape(x.shape[0], -1)
    for layer in self.layers[:-1]:
      h = jax.nn.leaky_relu(layer(h), self.negative_slope)
    h = self.layers[-1](h)
    return h.reshape((x.shape[0],) + self.mask_shape)

  def __call__(self, x):
    """The attention mask ``A(x)``, ``(B, *mask_shape)``, in ``[0, 1]``."""
    return jax.nn.sigmoid(self.logits(x))
