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
