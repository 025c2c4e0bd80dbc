"""The CIFAR-10 black box F of Grimm et al. (appendix B) and its LAN A.

F is the AlexNet-like CNN of the paper (the layer sizes of the classic
TensorFlow CIFAR-10 tutorial network):

``Conv(64, 2, 5x5), Conv(64, 2, 5x5), Conv(64, 1, 3x3), Conv(64, 1, 3x3),
Conv(32, 2, 3x3)`` (leaky ReLU), ``FC(384, tanh), FC(192, tanh),
FC(10, softmax)``, "where dropout and local response normalization is applied
at each layer".

Reading of "at each layer" (the paper gives no more detail): local response
normalisation (`local_response_norm`, across channels) after each
convolutional layer's activation, where it is defined; dropout after every
hidden layer (the five convolutions and the two tanh layers), never on the
logits. The softmax lives in the losses: F returns logits.

A is `lanjax.models.LatentAttentionNetwork` with three hidden layers of 500
and a ``32x32x1`` mask, tiled over the 3 channels by broadcasting
(`cifar_lan`).
"""

from __future__ import annotations

from typing import Optional, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from lanjax.models import conv_ops
from lanjax.models.lan import LatentAttentionNetwork

# (features, stride, kernel size) of appendix B.
PAPER_CONVS = ((64, 2, 5), (64, 2, 5), (64, 1, 3), (64, 1, 3), (32, 2, 3))
PAPER_DENSE = (384, 192)


def local_response_norm(x, *, depth_radius: int = 4, bias: float = 1.0,
                        alpha: float = 0.001 / 9.0, beta: float = 0.75):
  r"""Local response normalisation across channels (Krizhevsky et al., 2012).

  As ``tf.nn.local_response_normalization``:

  .. math::
     y_{\dots c} = x_{\dots c} \Big/ \Big(k + \alpha
        \sum_{|c' - c| \le r} x_{\dots c'}^2\Big)^{\beta}

  (the sum runs over the channels that exist). The defaults are those of the
  TensorFlow CIFAR-10 network (``r = 4, k = 1, alpha = 0.001 / 9,
  beta = 0.75``).

  Args:
    x: ``(..., C)``, channels last.
    depth_radius: ``r``, half-width of the channel window.
    bias: ``k``.
    alpha: the scale of the sum of squares.
    beta: the exponent.

  Returns:
    ``(..., C)``, same dtype.

  Example:
    >>> import jax.numpy as jnp
    >>> local_response_norm(jnp.ones((1, 3)), depth_radius=1, bias=1.0,
    ...                     alpha=1.0, beta=1.0).tolist()
    [[0.3333333432674408, 0.25, 0.3333333432674408]]
  """
  c = x.shape[-1]
  i = jnp.arange(c)
  band = (jnp.abs(i[:, None] - i[None, :]) <= depth_radius).astype(x.dtype)
  # A windowed sum over channels as a (C, C) product: a dot, fast everywhere.
  sq_sum = jnp.matmul(jnp.square(x), band,
                      )
  return x * jnp.power(bias + alpha * sq_sum, -beta)


def dropout(key, x, rate: float):
  """Inverted dropout: zero with probability ``rate``, scale the rest."""
  if key is None or rate == 0.0:
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), jnp.zeros((), x.dtype))


class CifarConvNet(nnx.Module):
  """F of appendix B: five convolutions, two tanh layers, 10 logits.

  Args:
    input_shape: ``(32, 32, 3)``.
    convs: ``(features, stride, kernel)`` per convolutional layer.
    dense: widths of the tanh layers.
    num_classes: 10.
    conv_dropout_rate: dropout after each convolutional layer.
    dense_dropout_rate: dropout after each tanh layer.
    lrn: apply `local_response_norm` after each convolution.
    negative_slope: slope of the leaky ReLU.
    rngs: NNX random streams for initialisation.

  ``f(x)`` is inference mode (no dropout): use it when F is explained.
  ``f(x, dropout_key=key)`` is training mode.

  Example:
    >>> from flax import nnx
    >>> import jax, jax.numpy as jnp
    >>> f = CifarConvNet(rngs=nnx.Rngs(0))
    >>> f(jnp.zeros((2, 32, 32, 3))).shape
    (2, 10)
    >>> f(jnp.zeros((2, 32, 32, 3)), dropout_key=jax.random.key(0)).shape
    (2, 10)
  """

  def __init__(self, input_shape: Sequence[int] = (32, 32, 3), *,
               convs: Sequence[Sequence[int]] = PAPER_CONVS,
               dense: Sequence[int] = PAPER_DENSE, num_classes: int = 10,
               conv_dropout_rate: float = 0.1,
               dense_dropout_rate: float = 0.3, lrn: bool = True,
               negative_slope: float = 0.01, rngs: nnx.Rngs):
    for name, rate in (('conv_dropout_rate', conv_dropout_rate),
                       ('dense_dropout_rate', dense_dropout_rate)):
      if not 0.0 <= rate < 1.0:
        raise ValueError(f'{name} must be in [0, 1), got {rate}.')
    self.input_shape = tuple(int(d) for d in input_shape)
    if len(self.input_shape) != 3:
      raise ValueError(f'input_shape must be (H, W, C), got {input_shape}.')
    h, w, c = self.input_shape
    self.conv_dropout_rate = float(conv_dropout_rate)
    self.dense_dropout_rate = float(dense_dropout_rate)
    self.lrn = bool(lrn)
    self.negative_slope = float(negative_slope)
    layers = []
    for feat, stride, k in convs:
      layers.append(nnx.Conv(c, feat, (k, k), strides=stride, padding='SAME',
                             rngs=rngs))
      c = feat
      h, w = -(-h // stride), -(-w // stride)
    self.convs = nnx.List(layers)
    widths = [h * w * c, *dense]
    self.dense = nnx.List([nnx.Linear(i, o, rngs=rngs)
                           for i, o in zip(widths[:-1], widths[1:])])
    self.head = nnx.Linear(widths[-1], num_classes, rngs=rngs)

  def __call__(self, x, *, dropout_key: Optional[jax.Array] = None):
    """Logits ``(B, num_classes)`` for images ``(B, 32, 32, 3)`` in [0, 1].

    Args:
      x: the images.
      dropout_key: a PRNG key turns dropout on (training); None (the default)
        is inference mode.
    """
    if tuple(x.shape[1:]) != self.input_shape:
      raise ValueError(
          f'F was built for inputs of shape {self.input_shape} per example '
          f'but got a batch of shape {tuple(x.shape)}.')
    n = len(self.convs) + len(self.dense)
    keys = (list(jax.random.split(dropout_key, n)) if dropout_key is not None
            else [None] * n)
    for conv, key in zip(self.convs, keys):
      x = jax.nn.leaky_relu(conv_ops.conv(conv, x), self.negative_slope)
      if self.lrn:
        x = local_response_norm(x)
      x = dropout(key, x, self.conv_dropout_rate)
    x = x.reshape(x.shape[0], -1)
    for layer, key in zip(self.dense, keys[len(self.convs):]):
      x = dropout(key, jnp.tanh(layer(x)), self.dense_dropout_rate)
    return self.head(x)


def cifar_lan(*, hidden: Sequence[int] = (500, 500, 500),
              rngs: nnx.Rngs) -> LatentAttentionNetwork:
  """A of appendix B: FC(500) x3 (leaky ReLU), FC(1024, sigmoid) -> 32x32x1.

  The ``(B, 32, 32, 1)`` mask broadcasts over the 3 colour channels in
  `lanjax.corrupt` (the paper's "tiled 3 times on the channel dimension").
  """
  return LatentAttentionNetwork((32, 32, 3), tuple(hidden),
                                mask_shape=(32, 32, 1), rngs=rngs)
