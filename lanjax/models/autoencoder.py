"""The convolutional autoencoder F of the Pong experiment (appendix D)."""

from __future__ import annotations

from typing import Optional, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from lanjax.models import conv_ops


class ConvAutoencoder(nnx.Module):
  """Strided convolutions down, strided transposed convolutions up.

  Appendix D of Grimm et al. is the default:
  ``Conv(16, 2, 5x5), Conv(32, 2, 5x5), Conv(64, 2, 5x5)`` (leaky ReLU), then
  ``ConvTrans(32, 2, 5x5), ConvTrans(16, 2, 5x5)`` (leaky ReLU) and
  ``ConvTrans(3, 2, 5x5, sigmoid)``: 64x64x3 -> 8x8x64 -> 64x64x3, the
  reconstruction in [0, 1]. 'SAME' padding, so each layer halves (doubles)
  the height and width; they must be divisible by ``stride ** len(features)``.

  Args:
    input_shape: ``(H, W, C)`` of one frame, e.g. ``(64, 64, 3)``.
    features: the encoder's widths; the decoder mirrors them, ending in
      ``C`` channels.
    kernel_size: the square kernel's side.
    stride: the stride of every layer.
    negative_slope: the leaky ReLU's slope.
    dropout_rate: dropout after each hidden layer, applied only when a
      ``dropout_key`` is given (0: none, as in the paper).
    rngs: NNX random streams for initialisation.

  Example:
    >>> from flax import nnx
    >>> import jax.numpy as jnp
    >>> f = ConvAutoencoder((64, 64, 3), rngs=nnx.Rngs(0))
    >>> f(jnp.zeros((2, 64, 64, 3))).shape
    (2, 64, 64, 3)
  """

  def __init__(self, input_shape: Sequence[int], *,
               features: Sequence[int] = (16, 32, 64), kernel_size: int = 5,
               stride: int = 2, negative_slope: float = 0.01,
               dropout_rate: float = 0.0, rngs: nnx.Rngs):
    if len(input_shape) != 3:
      raise ValueError(f'input_shape must be (H, W, C); got {input_shape}.')
    h, w, c = (int(d) for d in input_shape)
    factor = stride ** len(features)
    if h % factor or w % factor:
      raise ValueError(
          f'The frame size {h}x{w} must be divisible by stride ** '
          f'len(features) = {factor} for the reconstruction to have the '
          'input\'s shape; pad or resize the frames, or use fewer layers.')
    if not 0.0 <= dropout_rate < 1.0:
      raise ValueError(f'dropout_rate must be in [0, 1), got {dropout_rate}.')
    self.input_shape = (h, w, c)
    self.negative_slope = negative_slope
    self.dropout_rate = float(dropout_rate)
    k = (kernel_size, kernel_size)
    widths = [c, *features]
    self.encoder = nnx.List([
        nnx.Conv(i, o, k, strides=stride, padding='SAME', rngs=rngs)
        for i, o in zip(widths[:-1], widths[1:])])
    back = [*features[::-1], c]
    self.decoder = nnx.List([
        nnx.ConvTranspose(i, o, k, strides=stride, padding='SAME', rngs=rngs)
        for i, o in zip(back[:-1], back[1:])])

  def __call__(self, x, *, dropout_key: Optional[jax.Array] = None):
    """The reconstruction ``(B, H, W, C)`` in [0, 1] of frames ``(B, H, W, C)``.

    Args:
      x: frames (the paper's: in [0, 1]).
      dropout_key: a PRNG key turns dropout on (training); None is
        evaluation.
    """
    if tuple(x.shape[1:]) != self.input_shape:
      raise ValueError(
          f'The autoencoder was built for frames of shape {self.input_shape} '
          f'but got a batch of shape {tuple(x.shape)}.')
    layers = [*self.encoder, *self.decoder]
    keys = (jax.random.split(dropout_key, len(layers) - 1)
            if dropout_key is not None else [None] * (len(layers) - 1))
    apply = ([conv_ops.conv] * len(self.encoder)
             + [conv_ops.conv_transpose] * len(self.decoder))
    for layer, op, key in zip(layers[:-1], apply, keys):
      x = jax.nn.leaky_relu(op(layer, x), self.negative_slope)
      if key is not None and self.dropout_rate > 0:
        keep = jax.random.bernoulli(key, 1.0 - self.dropout_rate, x.shape)
        x = jnp.where(keep, x / (1.0 - self.dropout_rate), 0.0)
    return jax.nn.sigmoid(conv_ops.conv_transpose(layers[-1], x))
