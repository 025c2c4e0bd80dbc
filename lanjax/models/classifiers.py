"""Black-box networks F of the paper's image experiments."""

from __future__ import annotations

from typing import Sequence

import jax
from flax import nnx

from lanjax.models import conv_ops


class ConvClassifier(nnx.Module):
  """Strided convolutions with leaky ReLU, then one dense layer of logits.

  The translated-MNIST F of appendix A is the default:
  ``Conv(10, 2, 4x4, l-ReLU), Conv(20, 2, 4x4, l-ReLU), FC(10, softmax)``;
  this module returns the logits (the softmax lives in the losses).

  Example:
    >>> from flax import nnx
    >>> import jax.numpy as jnp
    >>> f = ConvClassifier((28, 28, 1), rngs=nnx.Rngs(0))
    >>> f(jnp.zeros((2, 28, 28, 1))).shape
    (2, 10)
  """

  def __init__(self, input_shape: Sequence[int], *,
               features: Sequence[int] = (10, 20), kernel_size: int = 4,
               stride: int = 2, num_classes: int = 10,
               negative_slope: float = 0.01, rngs: nnx.Rngs):
    h, w, c = input_shape
    self.negative_slope = negative_slope
    layers = []
    for feat in features:
      layers.append(nnx.Conv(c, feat, (kernel_size, kernel_size),
                             strides=stride, padding='SAME', rngs=rngs))
      c = feat
      h, w = -(-h // stride), -(-w // stride)
    self.convs = nnx.List(layers)
    self.head = nnx.Linear(h * w * c, num_classes, rngs=rngs)

  def __call__(self, x):
    """Logits ``(B, num_classes)`` for images ``(B, H, W, C)``."""
    for conv in self.convs:
      x = jax.nn.leaky_relu(conv_ops.conv(conv, x), self.negative_slope)
    return self.head(x.reshape(x.shape[0], -1))
