"""Black-box networks F of the paper's image experiments."""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx


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
    convs = []
    for feat in features:
      convs.append(nnx.Conv(c, feat, (kernel_size, kernel_size),
                            strides=stride, padding='SAME', rngs=rngs))
      c = feat
      h, w = -(-h // stride), -(-w // stride)
    self.convs = nnx.List(convs)
    self.head = nnx.Linear(h * w * c, num_classes, rngs=rngs)

  def __call__(self, x):
    """Logits ``(B, num_classes)`` for images ``(B, H, W, C)``."""
    for conv in self.convs:
      x = jax.nn.leaky_relu(_conv(conv, x), self.negative_slope)
    return self.head(x.reshape(x.shape[0], -1))


def _conv(conv: nnx.Conv, x):
  """``conv(x)``; strided 'SAME' convolutions via space-to-depth.

  A stride-``s`` convolution whose kernel size is a multiple of ``s`` equals a
  stride-1 convolution of the ``s x s`` space-to-depth rearranged input with
  the correspondingly rearranged kernel (same parameters, same sums in another
  order). Its gradient with respect to the input is then a plain convolution
  rather than one with a dilated input, which XLA:CPU runs slowly: the LAN
  step differentiates F with respect to its input for every noise sample.
  """
  kernel = conv.kernel[...]
  sh, sw = _pair(conv.strides or 1)
  k = kernel.shape[0]
  plain = (sh != sw or sh == 1 or k % sh or kernel.shape[1] != k
           or conv.padding != 'SAME' or conv.feature_group_count != 1
           or _pair(conv.kernel_dilation or 1) != (1, 1)
           or _pair(conv.input_dilation or 1) != (1, 1))
  if plain:
    return conv(x)
  bias = conv.bias[...] if conv.bias is not None else None
  return space_to_depth_conv(x, kernel, bias, sh)


def _pair(v):
  return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def space_to_depth_conv(x, kernel, bias, stride: int):
  """A stride-``stride`` 'SAME' convolution computed as a stride-1 one.

  Args:
    x: ``(N, H, W, C)``.
    kernel: ``(k, k, C, O)`` with ``k % stride == 0``.
    bias: ``(O,)`` or None.
    stride: the stride ``s``.

  Returns:
    ``(N, ceil(H/s), ceil(W/s), O)``, equal (up to float summation order) to
    ``lax.conv_general_dilated(x, kernel, (s, s), 'SAME')`` plus the bias.
  """
  s = stride
  n, h, w, c = x.shape
  k = kernel.shape[0]
  q = k // s
  oh, ow = -(-h // s), -(-w // s)

  def pads(size, out):
    total = max((out - 1) * s + k - size, 0)
    lo, hi = total // 2, total - total // 2
    hi += -(size + lo + hi) % s  # whole s x s blocks
    return lo, hi

  (t, b), (l, r) = pads(h, oh), pads(w, ow)
  x = jnp.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))
  hb, wb = x.shape[1] // s, x.shape[2] // s
  x = x.reshape(n, hb, s, wb, s, c).transpose(0, 1, 3, 2, 4, 5)
  x = x.reshape(n, hb, wb, s * s * c)
  kernel = kernel.reshape(q, s, q, s, c, -1).transpose(0, 2, 1, 3, 4, 5)
  kernel = kernel.reshape(q, q, s * s * c, -1)
  y = (_patch_conv(x, kernel) if IM2COL_MAX_WIDTH and q * q * s * s * c
       <= IM2COL_MAX_WIDTH else _valid_conv(x, kernel))[:, :oh, :ow]
  return y if bias is None else y + bias


_DN = ('NHWC', 'HWIO', 'NHWC')

# Space-to-depth convolutions whose patches are at most this wide (kernel
# taps x channels) run as one matrix product over the patches (im2col): the
# first layer of translated MNIST's F (16 wide), which XLA:CPU's
# convolutions run slowly with 4 input channels (F's step 9% and the K = 1
# LAN step 11% less CPU time on 2 cores; benchmarks/results.md). Wider ones
# stay convolutions (im2col was slower for the 160-wide second layer). 0:
# never.
IM2COL_MAX_WIDTH = 16


def _patch_conv(x, kernel):
  """`_valid_conv` as one matrix product over the input's patches (im2col)."""
  kh, kw, c, o = kernel.shape
  n, h, w, _ = x.shape
  oh, ow = h - kh + 1, w - kw + 1
  patches = jnp.concatenate([x[:, i:i + oh, j:j + ow]
                             for i in range(kh) for j in range(kw)], -1)
  return (patches.reshape(-1, kh * kw * c) @ kernel.reshape(-1, o)).reshape(
      n, oh, ow, o)


@jax.custom_vjp
def _valid_conv(x, kernel):
  """A stride-1 'VALID' NHWC/HWIO convolution.

  Its gradients are computed as convolutions in the canonical NHWC/HWIO
  layout: with respect to ``x`` with an explicitly transposed kernel, with
  respect to the kernel with x's channels as the batch; JAX's default rules
  use other layouts (the kernel read as HWOI, a convolution over the
  batch), which XLA:CPU canonicalises outside loops but not inside them
  (`lax.map` chunks, `training.multi_step`), where it then runs a naive
  convolution about 10x slower.
  """
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), 'VALID',
                                      dimension_numbers=_DN)


def _valid_conv_fwd(x, kernel):
  return _valid_conv(x, kernel), (x, kernel)


def _valid_conv_bwd(res, g):
  x, kernel = res
  kh, kw = kernel.shape[:2]
  flipped = jnp.transpose(kernel[::-1, ::-1], (0, 1, 3, 2))  # HWIO of g -> x
  dx = jax.lax.conv_general_dilated(
      g, flipped, (1, 1), ((kh - 1, kh - 1), (kw - 1, kw - 1)),
      dimension_numbers=_DN)
  # The kernel's gradient as a canonical NHWC/HWIO convolution too: x with
  # its channels as the batch, g as the kernel (the batch contracted). This
  # is what XLA:CPU rewrites JAX's rule (a convolution over the batch
  # dimension) into outside loops; inside a loop (`training.multi_step`)
  # it does not, and runs the rule's layout as a naive convolution, 7x
  # slower for translated MNIST's F step.
  dk = jax.lax.conv_general_dilated(
      jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(g, (1, 2, 0, 3)),
      (1, 1), 'VALID', dimension_numbers=_DN)  # (C, kh, kw, O)
  return dx, jnp.transpose(dk, (1, 2, 0, 3))


_valid_conv.defvjp(_valid_conv_fwd, _valid_conv_bwd)
