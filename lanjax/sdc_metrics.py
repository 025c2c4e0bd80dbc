"""Scores of an explanation against the SDC ground truth (`lanjax.data.sdc`).

In an SDC instance the label depends on one known segment, the foreground
``fg`` (``i*``). Any importance map, or an FCAM's own attention ``alpha``,
becomes one score per segment (`segment_scores`), which is then compared with
``fg``:

* `focus_true` - FT (Pandey et al., section 3.2): the foreground scores
  highest; ties explicit (``'strict'``, the paper's ``>``, or ``'random'``);
* `foreground_mass` - share of the importance mass on the foreground segment;
* `segment_pointing_game` - the single highest component lies in it;
* `attention_sparsity` - NNZ, Dist and Ent of ``alpha`` (Table 2);
* `foreground_alpha_above` - Fig. 6: share with ``alpha_{i*}`` above a
  threshold;
* `focus_predict_breakdown` - Fig. 5: FTPT / FFPT / FTPF / FFPF;
* `segment_deletion_curve` - F's probability as segments are deleted, most
  important first.

All per example (shape ``(B,)``) unless said otherwise, pure and jit-safe.
Layouts: *flat* inputs ``(B, m, ...)`` (segment on axis 1, e.g. the d = 2
tasks) or *mosaic* images ``(B, g*s, g*s[, C])`` with segment ``i`` at grid
row ``i // g``, column ``i % g`` (pass ``grid=g``).
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from lanjax import metrics as metrics_lib
from lanjax.data import sdc as sdc_data


def segment_scores(score, *, grid: Optional[int] = None):
  """Mean of a map over each segment: ``(B, m)``.

  Args:
    score: flat ``(B, m, ...)`` (``grid=None``) or a mosaic map ``(B, H, W)``
      or ``(B, H, W, C)`` (``grid=g``; ``H`` and ``W`` divisible by ``g``).
    grid: ``g`` for mosaic maps, None for flat ones.

  Returns:
    ``(B, m)`` mean score per segment, ``m = g * g`` for mosaics.
  """
  score = jnp.asarray(score)
  if grid is None:
    if score.ndim < 2:
      raise ValueError(
          f'score has shape {score.shape}; flat SDC maps are (B, m, ...). '
          'For mosaic images pass grid=g.')
    return score.reshape(score.shape[0], score.shape[1], -1).mean(-1)
  if score.ndim == 3:
    score = score[..., None]
  if score.ndim != 4:
    raise ValueError(
        f'score has shape {score.shape}; mosaic maps are (B, H, W) or '
        '(B, H, W, C).')
  segs = sdc_data.segments_from_mosaic(score, grid)  # (B, m, s, s, C)
  return segs.reshape(segs.shape[0], segs.shape[1], -1).mean(-1)


def _tied_top(seg, rtol):
  top = seg.max(-1, keepdims=True)
  span = top - seg.min(-1, keepdims=True)
  return seg >= top - rtol * jnp.maximum(span, 1e-12)


def focus_true(seg, fg, *, ties: str = 'strict', rtol: float = 1e-6):
  r"""FT per example: whether the foreground segment scores highest.

  .. math:: FT = \mathbf{1}\big(s_{i^*} > \max_{j \ne i^*} s_j\big)

  Scores within ``rtol`` of the score range of the top one count as tied.
  ``ties='strict'`` (the paper's ``>``) gives 0 when the foreground shares
  the top score with another segment; ``ties='random'`` gives the expected
  hit of a uniformly random tie-break, ``1 / #tied`` (a constant map then
  scores ``1 / m``).

  Args:
    seg: ``(B, m)`` segment scores (`segment_scores`, or ``alpha``).
    fg: ``(B,)`` int foreground indices.
    ties: ``'strict'`` or ``'random'``.
    rtol: relative tolerance that defines a tie.

  Returns:
    ``(B,)`` float in ``[0, 1]``; its mean is FT.
  """
  if ties not in ('strict', 'random'):
    raise ValueError(f"ties must be 'strict' or 'random', got {ties!r}.")
  seg = jnp.asarray(seg)
  tied = _tied_top(seg, rtol)
  n_tied = tied.sum(-1).astype(jnp.float32)
  fg_tied = jnp.take_along_axis(tied, jnp.asarray(fg)[:, None], -1)[:, 0]
  if ties == 'strict':
    return (fg_tied & (n_tied == 1)).astype(jnp.float32)
  return fg_tied.astype(jnp.float32) / n_tied


def foreground_mass(seg, fg):
  r"""Share of the segment-score mass on the foreground segment.

  .. math:: \frac{s_{i^*}}{\sum_j s_j}

  With equal-size segments and ``seg`` from `segment_scores`, this equals
  the share of a non-negative pixel map's mass inside the foreground segment
  (`lanjax.metrics.mass_in_region` on `foreground_region`).

  Args:
    seg: ``(B, m)`` non-negative segment scores.
    fg: ``(B,)`` foreground indices.

  Returns:
    ``(B,)`` in ``[0, 1]``; an example with no mass gets ``1 / m``.
  """
  seg = jnp.asarray(seg)
  total = seg.sum(-1)
  inside = jnp.take_along_axis(seg, jnp.asarray(fg)[:, None], -1)[:, 0]
  return jnp.where(total > 0, inside / jnp.where(total > 0, total, 1.0),
                   1.0 / seg.shape[-1])


def foreground_region(fg, shape, *, grid: Optional[int] = None):
  """Boolean ground-truth maps, True on the foreground segment.

  Args:
    fg: ``(B,)`` foreground indices.
    shape: one example's map shape: flat ``(m, ...)`` or mosaic ``(H, W)`` /
      ``(H, W, C)`` (with ``grid``).
    grid: ``g`` for mosaics, None for flat maps.

  Returns:
    ``(B, *shape)`` boolean.
  """
  fg = jnp.asarray(fg)
  shape = tuple(shape)
  if grid is None:
    m = shape[0]
    hit = jnp.arange(m) == fg[:, None]
    return jnp.broadcast_to(hit.reshape(hit.shape + (1,) * (len(shape) - 1)),
                            (fg.shape[0],) + shape)
  h, w = shape[:2]
  s, t = h // grid, w // grid
  rows = jnp.arange(h)[None, :, None] // s
  cols = jnp.arange(w)[None, None, :] // t
  region = (rows == (fg // grid)[:, None, None]) & (
      cols == (fg % grid)[:, None, None])
  return jnp.broadcast_to(region.reshape(region.shape + (1,) * (
      len(shape) - 2)), (fg.shape[0],) + shape)


def segment_pointing_game(score, fg, *, grid: Optional[int] = None,
                          rtol: float = 1e-6):
  """Whether the single highest component of a map lies in the foreground.

  `lanjax.metrics.pointing_game` against `foreground_region` (ties: the
  share of the tied maxima inside the foreground).

  Args:
    score: flat ``(B, m, ...)`` or mosaic ``(B, H, W[, C])`` map.
    fg: ``(B,)`` foreground indices.
    grid: ``g`` for mosaics.
    rtol: relative tolerance that defines a tie.

  Returns:
    ``(B,)`` hits in ``[0, 1]``.
  """
  score = jnp.asarray(score)
  region = foreground_region(fg, score.shape[1:], grid=grid)
  return metrics_lib.pointing_game(score, region, rtol=rtol)


def entropy(alpha, *, axis: int = -1):
  r"""``Ent(alpha) = -sum_j alpha_j log alpha_j`` (``0 log 0 = 0``).

  Usable as the entropy regulariser of section 5 (differentiable where
  ``alpha > 0``).
  """
  alpha = jnp.asarray(alpha)
  safe = jnp.where(alpha > 0, alpha, 1.0)
  return -(jnp.where(alpha > 0, alpha * jnp.log(safe), 0.0)).sum(axis)


def attention_sparsity(alpha, *, threshold: float = 0.01) -> dict:
  r"""The sparsity numbers of Table 2 for attention vectors ``alpha``.

  * ``nnz``: the number of ``alpha_j > threshold`` (the paper writes a
    ``1/m`` in front, but its Table 2 reports counts such as 4.23 for
    ``m = 9``, so lanjax reports the count);
  * ``dist``: :math:`\min_i \|\alpha - e_i\|_2`, the distance to the nearest
    one-hot vector (0 for one-hot, ``sqrt(1 - 1/m)`` for uniform);
  * ``ent``: `entropy`.

  Args:
    alpha: ``(B, m)`` attention vectors (on the simplex).
    threshold: the NNZ threshold (0.01 in the paper).

  Returns:
    ``{'nnz', 'dist', 'ent'}``, each ``(B,)``.
  """
  alpha = jnp.asarray(alpha)
  sq = (alpha ** 2).sum(-1) - 2 * alpha.max(-1) + 1.0
  return {
      'nnz': (alpha > threshold).sum(-1).astype(jnp.float32),
      'dist': jnp.sqrt(jnp.maximum(sq, 0.0)),
      'ent': entropy(alpha),
  }


def foreground_alpha_above(alpha, fg, thresholds):
  """Fig. 6: share of examples with ``alpha_{i*}`` above each threshold.

  Args:
    alpha: ``(B, m)``.
    fg: ``(B,)`` foreground indices.
    thresholds: ``(T,)``.

  Returns:
    ``(T,)`` fractions (a mean over the batch, not per example).
  """
  a_fg = jnp.take_along_axis(jnp.asarray(alpha), jnp.asarray(fg)[:, None],
                             -1)[:, 0]
  return (a_fg[None, :] > jnp.asarray(thresholds)[:, None]).mean(-1)


def focus_predict_breakdown(seg, fg, logits, y, *, rtol: float = 1e-6
                            ) -> dict:
  """Fig. 5: focus true/false x prediction true/false, per example.

  Focus true is `focus_true` with strict ties; prediction true is
  ``argmax(logits) == y``.

  Returns:
    ``{'ftpt', 'ffpt', 'ftpf', 'ffpf'}``, each ``(B,)`` in {0, 1}; exactly
    one is 1 per example.
  """
  ft = focus_true(seg, fg, ties='strict', rtol=rtol) > 0.5
  pt = jnp.argmax(logits, -1) == jnp.asarray(y)
  f = lambda v: v.astype(jnp.float32)
  return {'ftpt': f(ft & pt), 'ffpt': f(~ft & pt), 'ftpf': f(ft & ~pt),
          'ffpf': f(~ft & ~pt)}


def segment_deletion_curve(f: Callable, x, seg, *, grid: Optional[int] = None,
                           baseline=0.0, classes=None):
  """F's probability of a class as whole segments are deleted, best first.

  At step ``t = 0..m`` the ``t`` segments with the highest scores (ties: the
  lower index first) are set to ``baseline``. A lower area under the curve
  means the scores found what F needed earlier.

  Args:
    f: the black box, logits ``(B, C)``.
    x: flat ``(B, m, ...)`` or mosaic ``(B, H, W, C)`` inputs.
    seg: ``(B, m)`` segment scores.
    grid: ``g`` for mosaics.
    baseline: the value of a deleted segment.
    classes: ``(B,)`` tracked classes; default F's prediction on ``x``.

  Returns:
    ``(curve, auc)``: ``(m + 1, B)`` probabilities and ``(B,)`` trapezoid
    areas over the fraction deleted.
  """
  x = jnp.asarray(x)
  seg = jnp.asarray(seg)
  m = seg.shape[-1]
  if classes is None:
    classes = jnp.argmax(f(x), -1)
  order = jnp.argsort(-seg, axis=-1, stable=True)
  rank = jnp.argsort(order, axis=-1)  # rank of each segment, 0 = best

  def expand(deleted):  # (B, m) bool -> x's shape
    if grid is None:
      return deleted.reshape(deleted.shape + (1,) * (x.ndim - 2))
    seg_shape = (x.shape[1] // grid, x.shape[2] // grid, 1)
    blocks = jnp.broadcast_to(deleted[:, :, None, None, None],
                              deleted.shape + seg_shape)
    return sdc_data.mosaic_from_segments(blocks)

  def prob_at(t):
    xt = jnp.where(expand(rank < t), jnp.asarray(baseline, x.dtype), x)
    p = jax.nn.softmax(f(xt), -1)
    return jnp.take_along_axis(p, classes[:, None], -1)[:, 0]

  curve = jax.lax.map(prob_at, jnp.arange(m + 1))
  auc = ((curve[1:] + curve[:-1]) / 2).mean(0)
  return curve, auc
