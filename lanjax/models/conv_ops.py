"""Convolutions as XLA:CPU runs them fast: every one a stride-1 convolution.

`conv` and `conv_transpose` compute an ``nnx.Conv`` / ``nnx.ConvTranspose``
layer's output from the layer's own parameters (same values up to float
summation order, same parameters, so checkpoints are unchanged), but only
ever through stride-1, undilated, canonical NHWC/HWIO convolutions, forward
and backward:

* a stride-``s`` convolution whose kernel is a multiple of ``s`` is a
  stride-1 convolution of the ``s x s`` space-to-depth rearranged input;
  other strided convolutions keep XLA's strided forward pass (which it runs
  fast) and take their gradients from that form, the kernel zero-padded to
  a multiple of ``s``;
* a stride-``s`` transposed convolution is a stride-1 convolution with
  ``s * s`` times the output channels, one group per output phase, followed
  by the inverse (depth-to-space) rearrangement ("sub-pixel" convolution);
* gradients are stride-1 convolutions in the canonical layouts
  (`_valid_conv`'s custom VJP).

Why: JAX writes a strided convolution's input gradient, and a transposed
convolution itself, as a convolution of a dilated input, which XLA:CPU runs
with a generic loop far below its convolution kernels' (YNNPACK) rate, and
inside loops (`lax.map` chunks, `training.multi_step`) it runs JAX's
kernel-gradient layout as a naive convolution too. On Pong's autoencoder
these took ~70% of the LAN step (benchmarks/results.md).

Layers with settings these rewrites do not cover (dilation, groups, a mask,
circular padding, a dtype or precision, not 2-D) are run as they are.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

_DN = ('NHWC', 'HWIO', 'NHWC')

# Space-to-depth convolutions whose patches are at most this wide (kernel
# taps x channels) run as one matrix product over the patches (im2col): the
# first layer of translated MNIST's F (16 wide), which XLA:CPU's
# convolutions run slowly with 4 input channels (F's step 9% and the K = 1
# LAN step 11% less CPU time on 2 cores; benchmarks/results.md). Wider ones
# stay convolutions (im2col was slower for the 160-wide second layer). 0:
# never.
IM2COL_MAX_WIDTH = 16


def conv(layer: nnx.Conv, x):
  """``layer(x)`` for an ``nnx.Conv``, through stride-1 convolutions."""
  kernel = layer.kernel[...]
  if not _plain(layer, kernel) or not isinstance(layer.padding, str) or (
      layer.padding.upper() not in ('SAME', 'VALID')):
    return layer(x)
  strides = _pair(layer.strides or 1)
  pads = [_conv_pads(n, k, s, layer.padding.upper())
          for n, k, s in zip(x.shape[1:3], kernel.shape[:2], strides)]
  y = strided_conv(x, kernel, strides, pads)
  return y if layer.bias is None else y + layer.bias[...]


def conv_transpose(layer: nnx.ConvTranspose, x):
  """``layer(x)`` for an ``nnx.ConvTranspose``, through stride-1 convolutions."""
  kernel = layer.kernel[...]
  padding = layer.padding
  if not _plain(layer, kernel) or not (
      isinstance(padding, str) and padding.upper() in ('SAME', 'VALID')):
    return layer(x)
  if layer.transpose_kernel:
    kernel = jnp.swapaxes(kernel[::-1, ::-1], 2, 3)
  strides = _pair(layer.strides or 1)
  pads = [_conv_transpose_pads(k, s, padding.upper())
          for k, s in zip(kernel.shape[:2], strides)]
  y = subpixel_conv_transpose(x, kernel, strides, pads)
  return y if layer.bias is None else y + layer.bias[...]


def _plain(layer, kernel) -> bool:
  """Whether ``layer`` is a 2-D convolution the rewrites reproduce exactly."""
  return (kernel.ndim == 4 and getattr(layer, 'mask', None) is None
          and getattr(layer, 'dtype', None) is None
          and getattr(layer, 'precision', None) is None
          and getattr(layer, 'preferred_element_type', None) is None
          and getattr(layer, 'feature_group_count', 1) == 1
          and _pair(getattr(layer, 'kernel_dilation', None) or 1) == (1, 1)
          and _pair(getattr(layer, 'input_dilation', None) or 1) == (1, 1))


def _pair(v):
  return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _conv_pads(size: int, k: int, s: int, padding: str) -> tuple[int, int]:
  """Before/after padding of a stride-``s`` convolution (lax's rule)."""
  if padding == 'VALID':
    return 0, 0
  out = -(-size // s)
  total = max((out - 1) * s + k - size, 0)
  return total // 2, total - total // 2


def _conv_transpose_pads(k: int, s: int, padding: str) -> tuple[int, int]:
  """Before/after padding of the dilated input of `lax.conv_transpose`."""
  if padding == 'SAME':
    pad_len = k + s - 2
    pad_a = k - 1 if s > k - 1 else -(-pad_len // 2)
  else:  # VALID
    pad_len = k + s - 2 + max(k - s, 0)
    pad_a = k - 1
  return pad_a, pad_len - pad_a


def strided_conv(x, kernel, strides, pads):
  """A strided convolution computed as a stride-1 one (space-to-depth).

  Args:
    x: ``(N, H, W, C)``.
    kernel: ``(kh, kw, C, O)``, any size.
    strides: ``(sh, sw)``.
    pads: ``((top, bottom), (left, right))``, the convolution's padding.

  Returns:
    ``(N, OH, OW, O)``, equal (up to float summation order) to
    ``lax.conv_general_dilated(x, kernel, strides, pads)`` in NHWC/HWIO.
  """
  strides, pads = tuple(strides), tuple(tuple(p) for p in pads)
  kh, kw = kernel.shape[:2]
  if kh % strides[0] or kw % strides[1]:
    # The space-to-depth form would multiply zero taps ((ceil(k/s) s / k)^2
    # the work: 1.44x for 5x5 at stride 2); XLA:CPU runs the strided forward
    # pass fast, only its gradients slowly.
    return _strided_conv_direct(x, kernel, strides, pads)
  return _space_to_depth_conv(x, kernel, strides, pads)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _strided_conv_direct(x, kernel, strides, pads):
  """`lax.conv_general_dilated` forward; the gradients of the
  space-to-depth form (stride-1 convolutions)."""
  return jax.lax.conv_general_dilated(x, kernel, strides, pads,
                                      dimension_numbers=_DN)


def _strided_conv_direct_fwd(x, kernel, strides, pads):
  return _strided_conv_direct(x, kernel, strides, pads), (x, kernel)


def _strided_conv_direct_bwd(strides, pads, res, g):
  x, kernel = res
  # The forward pass of this VJP is dead code (its residuals are the
  # inputs): XLA removes it.
  _, vjp = jax.vjp(
      lambda x, k: _space_to_depth_conv(x, k, strides, pads), x, kernel)
  return vjp(g)


_strided_conv_direct.defvjp(_strided_conv_direct_fwd,
                            _strided_conv_direct_bwd)


def _space_to_depth_conv(x, kernel, strides, pads):
  """`strided_conv` as a stride-1 convolution of the ``s x s``
  space-to-depth rearranged input."""
  sh, sw = strides
  n, h, w, c = x.shape
  kh, kw = kernel.shape[:2]
  oh = (h + sum(pads[0]) - kh) // sh + 1
  ow = (w + sum(pads[1]) - kw) // sw + 1
  # Zero taps after the kernel make its size a multiple of the stride; the
  # input is padded so that whole s x s blocks cover every output's window.
  qh, qw = -(-kh // sh), -(-kw // sw)
  kernel = jnp.pad(kernel, ((0, qh * sh - kh), (0, qw * sw - kw), (0, 0),
                            (0, 0)))
  bh, bw = oh - 1 + qh, ow - 1 + qw  # blocks read
  (t, _), (l, _) = pads
  x = _fit(x, 1, t, bh * sh)
  x = _fit(x, 2, l, bw * sw)
  if (sh, sw) != (1, 1):
    x = x.reshape(n, bh, sh, bw, sw, c).transpose(0, 1, 3, 2, 4, 5)
    x = x.reshape(n, bh, bw, sh * sw * c)
    kernel = kernel.reshape(qh, sh, qw, sw, c, -1).transpose(0, 2, 1, 3, 4, 5)
    kernel = kernel.reshape(qh, qw, sh * sw * c, -1)
  if IM2COL_MAX_WIDTH and qh * qw * sh * sw * c <= IM2COL_MAX_WIDTH:
    return _patch_conv(x, kernel)
  return _valid_conv(x, kernel)


def subpixel_conv_transpose(x, kernel, strides, pads):
  """`lax.conv_transpose` computed as one stride-1 convolution.

  The transposed convolution convolves the input dilated by the stride
  (``s - 1`` zeros between pixels) with ``kernel``. Output pixel ``s * m +
  r`` reads only the taps ``j`` with ``r + j - a`` divisible by ``s``, from
  input pixels ``m + (r + j - a) / s``: for each of the ``s x s`` output
  phases ``r`` a stride-1 convolution of the undilated input with a
  sub-kernel. These share one window (a kernel of the union's size with
  zero taps where a phase has none), so one convolution with ``s * s * O``
  output channels computes all phases; a depth-to-space rearrangement
  interleaves them.

  Args:
    x: ``(N, H, W, C)``.
    kernel: ``(kh, kw, C, O)``, not flipped (`lax.conv_transpose`'s
      ``transpose_kernel=False``).
    strides: ``(sh, sw)``.
    pads: ``((a_h, b_h), (a_w, b_w))``: the padding of the dilated input.

  Returns:
    ``(N, OH, OW, O)`` with ``OH = (H - 1) * sh + 1 + a_h + b_h - kh + 1``.
  """
  n, h, w, c = x.shape
  o = kernel.shape[-1]
  taps, spans = [], []
  for size, k, s, (a, b) in zip((h, w), kernel.shape[:2], strides, pads):
    out = (size - 1) * s + 1 + a + b - k + 1
    m = -(-out // s)  # outputs per phase
    # (phase r, tap j) -> input offset d = (r + j - a) / s where integral.
    pairs = [(r, j, (r + j - a) // s) for r in range(s) for j in range(k)
             if (r + j - a) % s == 0]
    lo = min(d for _, _, d in pairs)
    q = max(d for _, _, d in pairs) - lo + 1
    index = np.full((q, s), k, np.int32)  # k: a zero tap
    for r, j, d in pairs:
      index[d - lo, r] = j
    taps.append(index)
    spans.append((out, m, lo, q))
  (oh, mh, lo_h, q_h), (ow, mw, lo_w, q_w) = spans
  # Sub-kernels (q_h, q_w, C, sh, sw, O) gathered from the zero-extended
  # kernel: exact on every backend (no matrix product).
  padded = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
  sub = padded[taps[0][:, None, :, None], taps[1][None, :, None, :]]
  sh, sw = strides
  sub = sub.transpose(0, 1, 4, 2, 3, 5).reshape(q_h, q_w, c, sh * sw * o)
  x = _fit(x, 1, -lo_h, mh + q_h - 1)
  x = _fit(x, 2, -lo_w, mw + q_w - 1)
  y = _valid_conv(x, sub)  # (N, mh, mw, sh * sw * O)
  y = y.reshape(n, mh, mw, sh, sw, o).transpose(0, 1, 3, 2, 4, 5)
  return y.reshape(n, mh * sh, mw * sw, o)[:, :oh, :ow]


def _fit(x, axis: int, before: int, length: int):
  """``x`` along ``axis`` shifted by ``before`` zeros (negative: cropped)
  and zero-padded or cropped to ``length``."""
  size = x.shape[axis]
  start = max(-before, 0)
  pad_lo = max(before, 0)
  pad_hi = max(length - (size - start + pad_lo), 0)
  widths = [(0, 0)] * x.ndim
  widths[axis] = (pad_lo, pad_hi)
  x = jnp.pad(x, widths)
  return jax.lax.slice_in_dim(x, start, start + length, axis=axis)


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
