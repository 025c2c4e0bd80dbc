"""Black boxes F for SDC tasks (`lanjax.data.sdc`): the FCAM and a plain CNN.

* `FCAM` - the focus-classify attention model of Pandey et al. (section 3.2):
  a focus net ``f`` scores each segment, ``alpha = softmax(f(x_1..x_m))`` (or
  `sparsemax`), and a classifier ``g`` classifies the attended input
  ``sum_j alpha_j x_j`` (``average_at='input'``, the paper's "zeroth layer")
  or the attended last hidden features of ``f`` (``'features'``, the paper's
  "sixth layer" variant). MLPs for flat segments ``(B, m, d)``, CNNs per
  segment for mosaic images ``(B, g*s, g*s, c)``.
* `MosaicCNN` - a plain CNN on the mosaic image with no attention: strided
  convolutions, a global max pool, dense layers. The case LAN is for.

Both return logits; a PRNG ``dropout_key`` turns dropout on (training).
"""

from __future__ import annotations

from typing import Optional, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from lanjax.data import sdc as sdc_data
from lanjax.models import conv_ops


def sparsemax(z, axis: int = -1):
  r"""Sparsemax (Martins & Astudillo, 2016): the projection onto the simplex.

  .. math:: \mathrm{sparsemax}(z) = \arg\min_{p \in \Delta} \|p - z\|^2
     = \max(z - \tau(z), 0)

  Args:
    z: scores, any shape.
    axis: the axis normalised to sum to 1.

  Returns:
    Non-negative values of ``z``'s shape summing to 1 along ``axis``, with
    exact zeros for low scores.

  Example:
    >>> import jax.numpy as jnp
    >>> sparsemax(jnp.array([1.0, 0.5, -1.0])).tolist()
    [0.75, 0.25, 0.0]
  """
  z = jnp.moveaxis(jnp.asarray(z), axis, -1)
  z = z - jax.lax.stop_gradient(z.max(-1, keepdims=True))  # same result
  zs = jnp.sort(z, axis=-1)[..., ::-1]
  k = jnp.arange(1, z.shape[-1] + 1, dtype=z.dtype)
  cum = jnp.cumsum(zs, -1)
  support = 1 + k * zs > cum
  k_z = support.sum(-1, keepdims=True)
  tau = (jnp.take_along_axis(cum, k_z - 1, -1) - 1) / k_z.astype(z.dtype)
  return jnp.moveaxis(jnp.maximum(z - tau, 0.0), -1, axis)


ATTENTION = {'softmax': jax.nn.softmax, 'sparsemax': sparsemax}


def _dropout(h, key, rate):
  if key is None or rate <= 0:
    return h
  keep = jax.random.bernoulli(key, 1.0 - rate, h.shape)
  return jnp.where(keep, h / (1.0 - rate), 0.0)


class SegmentNet(nnx.Module):
  """A per-segment network: strided convs (image segments) or none, then FCs.

  ``(N, *segment_shape) -> (features (N, hidden[-1]), outputs (N, out))``;
  the features are the last hidden layer (the input, flattened, if
  ``hidden`` is empty).
  """

  def __init__(self, segment_shape: Sequence[int], out: int, *,
               conv_features: Sequence[int] = (), hidden: Sequence[int] = (),
               kernel_size: int = 4, stride: int = 2,
               dropout_rate: float = 0.0, rngs: nnx.Rngs):
    self.segment_shape = tuple(int(d) for d in segment_shape)
    self.dropout_rate = float(dropout_rate)
    convs = []
    if len(self.segment_shape) == 3:
      h, w, c = self.segment_shape
      for feat in conv_features:
        convs.append(nnx.Conv(c, feat, (kernel_size, kernel_size),
                              strides=stride, padding='SAME', rngs=rngs))
        c = feat
        h, w = -(-h // stride), -(-w // stride)
      width = h * w * c
    elif len(self.segment_shape) == 1:
      if conv_features:
        raise ValueError('conv_features needs image segments (s, s, c); flat '
                         f'segments {self.segment_shape} take hidden only.')
      width = self.segment_shape[0]
    else:
      raise ValueError(
          f'segment_shape {self.segment_shape} must be (d,) or (s, s, c).')
    self.convs = nnx.List(convs)
    widths = [width, *hidden]
    self.hidden = nnx.List([nnx.Linear(i, o, rngs=rngs)
                            for i, o in zip(widths[:-1], widths[1:])])
    self.feature_dim = widths[-1]
    self.head = nnx.Linear(widths[-1], out, rngs=rngs)

  def __call__(self, x, *, dropout_key=None):
    for conv in self.convs:
      x = jax.nn.relu(conv_ops.conv(conv, x))
    h = x.reshape(x.shape[0], -1)
    keys = (jax.random.split(dropout_key, max(len(self.hidden), 1))
            if dropout_key is not None else [None] * len(self.hidden))
    for layer, key in zip(self.hidden, keys):
      h = _dropout(jax.nn.relu(layer(h)), key, self.dropout_rate)
    return h, self.head(h)


class FCAM(nnx.Module):
  r"""The focus-classify attention model of Pandey et al. (section 3.2).

  .. math::
     \alpha(x) = \mathrm{softmax}(f(x_1), \dots, f(x_m)), \qquad
     h(x) = g\Big(\sum_j \alpha_j(x)\, \phi(x_j)\Big)

  with ``phi(x_j) = x_j`` (``average_at='input'``) or the last hidden layer
  of ``f`` (``'features'``). Trained for accuracy only; ``alpha`` is its own
  account of where it looks, scored against the true foreground by FT.

  Args:
    segment_shape: one segment: ``(d,)`` (inputs ``(B, m, d)``) or ``(s, s,
      c)`` (inputs: mosaic images ``(B, g*s, g*s, c)``, `lanjax.data.sdc`).
    num_segments: ``m`` (a square for image segments).
    num_classes: ``k``.
    focus_hidden, classifier_hidden: FC widths of ``f`` and ``g``.
    conv_features: conv widths per segment net (image segments only), shared
      by the layout of ``f`` and ``g``.
    attention: ``'softmax'`` or ``'sparsemax'``.
    average_at: ``'input'`` or ``'features'``.
    dropout_rate: dropout after the hidden FC layers of ``g`` (training).
    rngs: NNX random streams.

  Example:
    >>> from flax import nnx
    >>> import jax.numpy as jnp
    >>> f = FCAM((2,), focus_hidden=(16,), classifier_hidden=(16,),
    ...          rngs=nnx.Rngs(0))
    >>> f(jnp.zeros((4, 9, 2))).shape, f.alpha(jnp.zeros((4, 9, 2))).shape
    ((4, 3), (4, 9))
  """

  def __init__(self, segment_shape: Sequence[int], *, num_segments: int = 9,
               num_classes: int = 3, focus_hidden: Sequence[int] = (64,),
               classifier_hidden: Sequence[int] = (64,),
               conv_features: Sequence[int] = (), attention: str = 'softmax',
               average_at: str = 'input', dropout_rate: float = 0.0,
               rngs: nnx.Rngs):
    if attention not in ATTENTION:
      raise ValueError(f'attention must be one of {sorted(ATTENTION)}, got '
                       f'{attention!r}.')
    if average_at not in ('input', 'features'):
      raise ValueError("average_at must be 'input' or 'features', got "
                       f'{average_at!r}.')
    if not 0.0 <= dropout_rate < 1.0:
      raise ValueError(f'dropout_rate must be in [0, 1), got {dropout_rate}.')
    self.segment_shape = tuple(int(d) for d in segment_shape)
    self.num_segments = int(num_segments)
    self.image = len(self.segment_shape) == 3
    self.grid = sdc_data.grid_size(num_segments) if self.image else None
    self.attention = attention
    self.average_at = average_at
    self.focus = SegmentNet(self.segment_shape, 1, conv_features=conv_features,
                            hidden=focus_hidden, rngs=rngs)
    if average_at == 'input':
      self.classifier = SegmentNet(
          self.segment_shape, num_classes, conv_features=conv_features,
          hidden=classifier_hidden, dropout_rate=dropout_rate, rngs=rngs)
    else:
      self.classifier = SegmentNet(
          (self.focus.feature_dim,), num_classes, hidden=classifier_hidden,
          dropout_rate=dropout_rate, rngs=rngs)

  @property
  def input_shape(self) -> tuple[int, ...]:
    """One input example: ``(m, d)`` or ``(g*s, g*s, c)``."""
    if self.image:
      s, t, c = self.segment_shape
      return (self.grid * s, self.grid * t, c)
    return (self.num_segments,) + self.segment_shape

  def segments(self, x):
    """``(B, *input_shape) -> (B, m, *segment_shape)``."""
    if tuple(x.shape[1:]) != self.input_shape:
      raise ValueError(
          f'The FCAM was built for inputs of shape {self.input_shape} per '
          f'example but got a batch of shape {tuple(x.shape)}.')
    return sdc_data.segments_from_mosaic(x, self.grid) if self.image else x

  def attend(self, x, *, dropout_key: Optional[jax.Array] = None) -> dict:
    """``{'logits': (B, k), 'alpha': (B, m), 'scores': (B, m)}``.

    ``scores`` are the focus net's outputs ``f(x_j)``; ``alpha`` their
    softmax (sparsemax).
    """
    segs = self.segments(x)
    b, m = segs.shape[:2]
    feats, scores = self.focus(segs.reshape((b * m,) + segs.shape[2:]))
    scores = scores.reshape(b, m)
    alpha = ATTENTION[self.attention](scores, axis=-1)
    if self.average_at == 'input':
      attended = jnp.einsum('bm,bm...->b...', alpha, segs)
    else:
      attended = jnp.einsum('bm,bmf->bf', alpha, feats.reshape(b, m, -1))
    _, logits = self.classifier(attended, dropout_key=dropout_key)
    return {'logits': logits, 'alpha': alpha, 'scores': scores}

  def alpha(self, x):
    """The attention vector ``alpha(x)``, ``(B, m)``, summing to 1."""
    return self.attend(x)['alpha']

  def __call__(self, x, *, dropout_key: Optional[jax.Array] = None):
    """Logits ``(B, k)``; a ``dropout_key`` turns dropout on (training)."""
    return self.attend(x, dropout_key=dropout_key)['logits']


class MosaicCNN(nnx.Module):
  """A plain CNN on the whole mosaic image: no attention, no segments.

  ``Conv(features[i], 4x4, stride 2, ReLU)...``, a global max pool over
  positions (so the foreground can be found wherever it lies), then
  ``FC(hidden, ReLU)..., FC(num_classes)`` logits.

  Example:
    >>> from flax import nnx
    >>> import jax.numpy as jnp
    >>> f = MosaicCNN((84, 84, 1), rngs=nnx.Rngs(0))
    >>> f(jnp.zeros((2, 84, 84, 1))).shape
    (2, 3)
  """

  def __init__(self, input_shape: Sequence[int], *,
               features: Sequence[int] = (32, 64, 64),
               hidden: Sequence[int] = (64,), num_classes: int = 3,
               kernel_size: int = 4, stride: int = 2,
               dropout_rate: float = 0.0, rngs: nnx.Rngs):
    if not 0.0 <= dropout_rate < 1.0:
      raise ValueError(f'dropout_rate must be in [0, 1), got {dropout_rate}.')
    self.input_shape = tuple(int(d) for d in input_shape)
    if len(self.input_shape) != 3:
      raise ValueError(f'input_shape {self.input_shape} must be (H, W, C).')
    c = self.input_shape[-1]
    convs = []
    for feat in features:
      convs.append(nnx.Conv(c, feat, (kernel_size, kernel_size),
                            strides=stride, padding='SAME', rngs=rngs))
      c = feat
    self.convs = nnx.List(convs)
    self.mlp = SegmentNet((c,), num_classes, hidden=hidden,
                          dropout_rate=dropout_rate, rngs=rngs)

  def __call__(self, x, *, dropout_key: Optional[jax.Array] = None):
    """Logits ``(B, num_classes)`` for mosaics ``(B, H, W, C)``."""
    if tuple(x.shape[1:]) != self.input_shape:
      raise ValueError(
          f'The MosaicCNN was built for inputs of shape {self.input_shape} '
          f'per example but got a batch of shape {tuple(x.shape)}.')
    for conv in self.convs:
      x = jax.nn.relu(conv_ops.conv(conv, x))
    return self.mlp(x.max(axis=(1, 2)), dropout_key=dropout_key)[1]
