"""Mask-quality metrics: localisation against known ground truth, fidelity.

All functions are pure, per example (shape ``(B,)``) unless said otherwise, and
jit-safe. Importance is ``1 - A(x)``: components the LAN may not corrupt.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def importance(mask):
  """The importance map ``1 - A(x)`` (high where F attends)."""
  return 1.0 - mask


def _flat(v):
  return v.reshape(v.shape[0], -1)


def mass_in_region(score, region):
  r"""Share of each example's (non-negative) score mass inside ``region``.

  .. math:: \frac{\sum_i s_i r_i}{\sum_i s_i}

  Args:
    score: non-negative map, ``(B, ...)``, e.g. `importance`.
    region: boolean or {0,1} map of the same shape, the ground-truth region.

  Returns:
    ``(B,)`` shares in ``[0, 1]``; an example with no mass gets the region's
    area share (what a uniform map would give).
  """
  s, r = _flat(score), _flat(region).astype(score.dtype)
  total = s.sum(-1)
  inside = (s * r).sum(-1)
  area = r.mean(-1)
  return jnp.where(total > 0, inside / jnp.where(total > 0, total, 1), area)


def pointing_game(score, region, *, rtol: float = 1e-6):
  """Whether each example's highest-scoring component lies in ``region``.

  Ties are broken explicitly: when several components share the maximum
  (within ``rtol`` of the score range), the hit is the fraction of the tied
  maxima inside the region, i.e. the expected hit of a uniformly random
  tie-break. A constant map thus scores the region's area share, not 0 or 1.

  Args:
    score: map ``(B, ...)``; higher means more important.
    region: boolean ground-truth map of the same shape.
    rtol: relative tolerance that defines a tie.

  Returns:
    ``(B,)`` hits in ``[0, 1]``.
  """
  s, r = _flat(score), _flat(region).astype(jnp.float32)
  top = s.max(-1, keepdims=True)
  span = top - s.min(-1, keepdims=True)
  tied = (s >= top - rtol * jnp.maximum(span, 1e-12)).astype(jnp.float32)
  return (tied * r).sum(-1) / tied.sum(-1)


def agreement(logits, reference_logits):
  """Per example, 1.0 where ``argmax(logits) == argmax(reference_logits)``."""
  return (jnp.argmax(logits, -1) == jnp.argmax(reference_logits, -1)).astype(
      jnp.float32)


def box_region(boxes, size: int, shape):
  """Boolean maps of ``shape[:2]`` (H, W), True inside square boxes.

  Args:
    boxes: ``(B, 2)`` int top-left corners (row, col).
    size: side of the square box.
    shape: ``(H, W)`` of the map.

  Returns:
    ``(B, H, W)`` boolean.
  """
  h, w = shape
  rows = jnp.arange(h)[None, :, None]
  cols = jnp.arange(w)[None, None, :]
  r0 = boxes[:, 0][:, None, None]
  c0 = boxes[:, 1][:, None, None]
  return (rows >= r0) & (rows < r0 + size) & (cols >= c0) & (cols < c0 + size)


def deletion_curve(f, x, order, *, num_steps: int, baseline=0.0, classes=None):
  """F's probability of a class as components of ``x`` are deleted in order.

  At step ``t`` of ``num_steps + 1`` the first ``round(t / num_steps * n)``
  components of ``order`` are set to ``baseline``, where ``n`` is each
  example's number of candidate components (the length of ``order`` that is
  not ``-1``). Lower area under the curve means the order removed what F
  needed earlier.

  Args:
    f: the black box returning logits ``(B, C)``.
    x: inputs ``(B, d)`` (flattened components).
    order: ``(B, d)`` int indices, most important first; ``-1`` pads entries
      that are not candidates.
    num_steps: number of deletion steps.
    baseline: value a deleted component takes.
    classes: ``(B,)`` classes whose probability is tracked; defaults to F's
      prediction on the clean input.

  Returns:
    ``(curve, auc)``: ``(num_steps + 1, B)`` probabilities and ``(B,)`` areas
    (trapezoid rule over the fraction deleted, in ``[0, 1]``).
  """
  x = jnp.asarray(x)
  logits = f(x)
  if classes is None:
    classes = jnp.argmax(logits, -1)
  valid = order >= 0
  n = valid.sum(-1)  # (B,)
  rank = jnp.cumsum(valid, axis=-1) - 1  # rank of each entry of `order`
  safe_order = jnp.where(valid, order, 0)

  def prob_at(t):
    k = jnp.round(t / num_steps * n).astype(jnp.int32)
    delete_entry = valid & (rank < k[:, None])
    # Scatter the deletion flags from `order` positions to component positions.
    deleted = jnp.zeros(x.shape, bool).at[
        jnp.arange(x.shape[0])[:, None], safe_order].max(delete_entry)
    xt = jnp.where(deleted, jnp.asarray(baseline, x.dtype), x)
    p = jax.nn.softmax(f(xt), -1)
    return jnp.take_along_axis(p, classes[:, None], -1)[:, 0]

  curve = jax.lax.map(prob_at, jnp.arange(num_steps + 1))
  auc = ((curve[1:] + curve[:-1]) / 2).mean(0)
  return curve, auc


def class_similarity(masks, labels, *, num_classes: int, centre: bool = True):
  r"""Within-class vs between-class similarity of masks (do classes share them?).

  Each mask is flattened, the mean mask over all examples is subtracted (with
  ``centre``, so that a pattern common to every input does not count as
  shared), and the residual is scaled to unit length: :math:`z_i`. The
  similarity of two masks is the cosine :math:`z_i^\top z_j`; its means over
  the pairs of distinct examples of one class and over the pairs of
  different classes are computed exactly from the class sums
  :math:`S_c = \sum_{i \in c} z_i` (no ``N x N`` matrix):

  .. math::
     \text{within} = \frac{\sum_c (\|S_c\|^2 - \sum_{i \in c}\|z_i\|^2)}
                          {\sum_c n_c (n_c - 1)}, \quad
     \text{between} = \frac{\|\sum_c S_c\|^2 - \sum_c \|S_c\|^2}
                           {N^2 - \sum_c n_c^2}.

  A mask equal to the mean mask has a zero residual: it counts as
  similarity 0 with every other mask.

  Baselines: the same numbers with permuted labels (`permuted_class_gaps`),
  and with random masks, for which both are about 0.

  Args:
    masks: ``(N, ...)`` masks (or importance maps), one per example.
    labels: ``(N,)`` int classes in ``[0, num_classes)``.
    num_classes: the number of classes ``C`` (static).
    centre: subtract the mean mask first.

  Returns:
    ``{'within', 'between', 'gap'}`` scalars (``gap = within - between``) and
    ``'within_per_class'`` ``(C,)`` (NaN for classes with fewer than two
    examples).

  Example:
    >>> import jax.numpy as jnp
    >>> m = jnp.array([[1., 0.], [1., 0.], [0., 1.], [0., 1.]])
    >>> s = class_similarity(m, jnp.array([0, 0, 1, 1]), num_classes=2)
    >>> round(float(s['within']), 4), round(float(s['between']), 4)
    (1.0, -1.0)
  """
  z = _flat(jnp.asarray(masks, jnp.float32))
  if centre:
    z = z - z.mean(0, keepdims=True)
  norm = jnp.linalg.norm(z, axis=-1, keepdims=True)
  z = z / jnp.where(norm > 0, norm, 1.0)
  labels = jnp.asarray(labels, jnp.int32)
  sums = jax.ops.segment_sum(z, labels, num_segments=num_classes)  # (C, d)
  self_sq = jax.ops.segment_sum((z * z).sum(-1), labels,
                                num_segments=num_classes)  # (C,)
  counts = jax.ops.segment_sum(jnp.ones_like(labels, jnp.float32), labels,
                               num_segments=num_classes)
  class_sq = (sums * sums).sum(-1)  # ||S_c||^2
  within_pairs = counts * (counts - 1)
  within_per_class = jnp.where(
      within_pairs > 0,
      (class_sq - self_sq) / jnp.where(within_pairs > 0, within_pairs, 1.0),
      jnp.nan)
  n = counts.sum()
  total = sums.sum(0)
  between_pairs = n * n - (counts * counts).sum()
  within = (class_sq - self_sq).sum() / jnp.maximum(within_pairs.sum(), 1.0)
  between = ((total * total).sum() - class_sq.sum()) / jnp.maximum(
      between_pairs, 1.0)
  return {'within': within, 'between': between, 'gap': within - between,
          'within_per_class': within_per_class}


def permuted_class_gaps(key, masks, labels, *, num_classes: int,
                        num_permutations: int = 200, centre: bool = True):
  """`class_similarity`'s ``gap`` with the labels randomly permuted.

  The null distribution of the gap when masks carry no class information:
  compare the real gap with it (e.g. ``(gap - null.mean()) / null.std()``, or
  the share of null gaps at least as large).

  Args:
    key: a PRNG key.
    masks, labels, num_classes, centre: as in `class_similarity`.
    num_permutations: the number of permutations ``P``.

  Returns:
    ``(P,)`` gaps.
  """
  labels = jnp.asarray(labels, jnp.int32)
  keys = jax.random.split(key, num_permutations)

  def gap(k):
    return class_similarity(masks, jax.random.permutation(k, labels),
                            num_classes=num_classes, centre=centre)['gap']

  return jax.lax.map(gap, keys)


def input_specificity(masks):
  r"""How much masks vary across inputs, against their common pattern.

  With :math:`\bar m` the mean mask over the ``N`` examples and :math:`\mu`
  its mean value, the spread of all mask values about :math:`\mu` splits
  exactly into an input-specific part and a constant pattern:

  .. math::
     \underbrace{\tfrac{1}{Nd}\sum_{i,p} (m_{ip} - \bar m_p)^2}_{\text{across}}
     + \underbrace{\tfrac{1}{d}\sum_p (\bar m_p - \mu)^2}_{\text{pattern}}
     = \tfrac{1}{Nd}\sum_{i,p} (m_{ip} - \mu)^2 .

  Args:
    masks: ``(N, ...)`` masks ``A(x)``.

  Returns:
    ``{'spread'}``: RMS deviation of the masks from the mean mask
    (:math:`\sqrt{\text{across}}`); ``'pattern_spread'``: RMS of the mean mask
    about its mean (:math:`\sqrt{\text{pattern}}`); ``'mean'``:
    :math:`\mu`; ``'specific_fraction'``: across / (across + pattern), 0
    when every input gets the same mask (a fixed pattern, like the
    translated-MNIST grid), 1 when the mean mask is flat (0 when all masks
    are one constant).
  """
  m = _flat(jnp.asarray(masks, jnp.float32))
  mean_mask = m.mean(0)
  mu = mean_mask.mean()
  across = jnp.square(m - mean_mask).mean()
  pattern = jnp.square(mean_mask - mu).mean()
  total = across + pattern
  some = total > 1e-12  # float rounding of one constant is not variation
  return {'spread': jnp.sqrt(across), 'pattern_spread': jnp.sqrt(pattern),
          'mean': mu,
          'specific_fraction': jnp.where(some, across / jnp.where(
              some, total, 1.0), 0.0)}
