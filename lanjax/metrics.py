"""Mask-quality metrics: localisation against known ground truth, fidelity.

All functions are pure, per example (shape ``(B,)``) unless said otherwise, and
jit-safe. Importance is ``1 - A(x)``: components the LAN may not corrupt.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from lanjax import corruption
from lanjax import validation


def _check_map_and_region(score, region, what: str):
  """Both arrays with a non-empty batch axis and as many components each."""
  validation.check_array(score, name=f'{what}: score', min_ndim=1, batch=True)
  validation.check_array(region, name=f'{what}: region', min_ndim=1,
                         batch=True)
  s, r = tuple(np.shape(score)), tuple(np.shape(region))
  if s[0] != r[0] or math.prod(s[1:]) != math.prod(r[1:]):
    raise ValueError(
        f'{what}: the score map has shape {s} but the region has shape {r}; '
        'give one region per example with as many components as the map '
        '(e.g. average an RGB map over its channels onto an (H, W) region).')


def _check_num_steps(num_steps):
  if (isinstance(num_steps, bool)
      or not isinstance(num_steps, (int, np.integer)) or num_steps < 1):
    raise ValueError(f'num_steps must be a positive int, got {num_steps!r}.')


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
  _check_map_and_region(score, region, 'mass_in_region')
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
  _check_map_and_region(score, region, 'pointing_game')
  s, r = _flat(score), _flat(region).astype(jnp.float32)
  top = s.max(-1, keepdims=True)
  span = top - s.min(-1, keepdims=True)
  tied = (s >= top - rtol * jnp.maximum(span, 1e-12)).astype(jnp.float32)
  return (tied * r).sum(-1) / tied.sum(-1)


def agreement(logits, reference_logits):
  """Per example, 1.0 where ``argmax(logits) == argmax(reference_logits)``."""
  return (jnp.argmax(logits, -1) == jnp.argmax(reference_logits, -1)).astype(
      jnp.float32)


def permuted(key, maps):
  """Each example's map with its components randomly permuted (the control).

  The same values per example, hence the same amount of corruption for a
  mask, placed without knowledge of F or of the example: the random-mask
  control of a learned mask. Every example gets its own permutation.

  Args:
    key: PRNG key.
    maps: ``(B, ...)``.

  Returns:
    ``(B, ...)``, each ``maps[i]`` permuted over all its components.
  """
  flat = _flat(maps)
  perm = jax.vmap(jax.random.permutation)(
      jax.random.split(key, flat.shape[0]), flat)
  return perm.reshape(jnp.shape(maps))


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
  needed earlier. `perturbation_curve` is the same protocol for importance
  maps, with insertion and other removal operators.

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
  _check_num_steps(num_steps)
  validation.check_array(x, name='deletion_curve: x', min_ndim=2, batch=True)
  validation.check_array(order, name='deletion_curve: order', min_ndim=2,
                         batch=True)
  if np.shape(order)[0] != np.shape(x)[0]:
    raise ValueError(
        f'deletion_curve: order has shape {np.shape(order)} but x has shape '
        f'{np.shape(x)}; give one order (component indices, -1 padding) per '
        'example.')
  x = jnp.asarray(x)
  valid = order >= 0
  rank = jnp.cumsum(valid, axis=-1) - 1  # rank of each entry of `order`
  # Scatter each entry's rank from `order` positions to component positions;
  # components that are not candidates keep a rank no step reaches.
  never = jnp.iinfo(jnp.int32).max
  component_rank = jnp.full(x.shape, never, jnp.int32).at[
      jnp.arange(x.shape[0])[:, None], jnp.where(valid, order, 0)].min(
          jnp.where(valid, rank, never))
  replacement = jnp.broadcast_to(jnp.asarray(baseline, x.dtype), x.shape)
  return _ranked_curve(f, x, component_rank, valid.sum(-1), replacement,
                       num_steps=num_steps, insertion=False,
                       score=_probability_score(f, x, classes))


def _probability_score(f, x, classes):
  """``s(out) -> (B,)``: softmax probability of ``classes`` (default: F's)."""
  if classes is None:
    classes = jnp.argmax(f(x), -1)
  return lambda out: jnp.take_along_axis(
      jax.nn.softmax(out, -1), classes[:, None], -1)[:, 0]


def _ranked_curve(f, x, rank, n, replacement, *, num_steps, insertion, score):
  """Scores as the components of lowest ``rank`` are removed (or inserted).

  Args:
    f: the black box.
    x: ``(B, *d)``.
    rank: int ranks ``(B, *m)`` (``m`` broadcastable to ``d``), 0 = first.
    n: ``(B,)`` number of candidate components (ranks ``0 .. n-1``); with
      ``insertion`` all components must be candidates.
    replacement: ``(B, *d)`` what a removed component becomes.
    num_steps: steps of equal fractions of ``n``.
    insertion: start from all removed and put back in rank order.
    score: ``s(out) -> (B,)``.

  Returns:
    ``(curve (num_steps + 1, B), auc (B,))``.
  """
  def at(t):
    k = jnp.round(t / num_steps * n).astype(jnp.int32)
    first = rank < k.reshape((-1,) + (1,) * (rank.ndim - 1))
    removed = ~first if insertion else first
    return score(f(corruption.corrupt(x, removed.astype(x.dtype),
                                      replacement)))

  curve = jax.lax.map(at, jnp.arange(num_steps + 1))
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


def perturbation_curve(f, x, importance, *, key, removal: Callable,
                       mode: str = 'deletion', num_steps: int = 20,
                       score: Optional[Callable] = None, classes=None):
  r"""Deletion or insertion curve of an importance map (RISE protocol).

  The components of the map are ranked, most important first (ties broken at
  random by ``key``, so a constant map scores as a random order). At step
  ``t`` of ``num_steps + 1`` the top ``round(t / num_steps * n)`` are

  * ``'deletion'``: replaced (``x~ = corrupt(x, removed, eta)``), starting
    from the clean input: a low area means the map found what F needs;
  * ``'insertion'``: put back into a fully replaced input: a high area means
    the map found what F needs.

  The replacement ``eta = removal(key, x)`` is drawn once per example; a map
  component of shape broadcastable to ``x`` (e.g. a pixel of an RGB image)
  is removed with all the input components it covers.

  Args:
    f: the black box.
    x: ``(B, *d)``.
    importance: ``(B, *m)``, broadcastable to ``x``; higher = more important.
    key: PRNG key (tie-break and replacement).
    removal: ``removal(key, x) -> eta`` of ``x``'s shape; see
      `removal_by_noise`, `removal_by_blur`, `removal_by_mean`.
    mode: ``'deletion'`` or ``'insertion'``.
    num_steps: number of equal steps.
    score: ``score(out, x) -> (B,)``, the tracked quantity (e.g. negative
      squared error for autoencoders); default: F's softmax probability of
      ``classes``.
    classes: ``(B,)`` classes for the default score; default F's prediction
      on ``x``.

  Returns:
    ``(curve, auc)``: ``(num_steps + 1, B)`` scores and ``(B,)`` trapezoid
    areas over the fraction removed or inserted (in ``[0, 1]`` for
    probabilities).
  """
  if mode not in ('deletion', 'insertion'):
    raise ValueError(
        f"mode must be 'deletion' or 'insertion', got {mode!r}.")
  _check_num_steps(num_steps)
  x, importance = jnp.asarray(x), jnp.asarray(importance)
  if importance.shape[:1] != x.shape[:1]:
    raise ValueError(
        f'importance has shape {importance.shape} but x has shape {x.shape}; '
        'they must share the batch axis.')
  corruption.check_broadcastable(importance.shape, x.shape)
  tie_key, removal_key = jax.random.split(key)
  rank = rank_order(importance, key=tie_key)
  n = jnp.full(x.shape[:1], math.prod(importance.shape[1:]), jnp.int32)
  eta = removal(removal_key, x)
  if jnp.shape(eta) != x.shape:
    raise ValueError(f'removal(key, x) returned shape {jnp.shape(eta)}; it '
                     f'must return a replacement of x\'s shape {x.shape}.')
  s = (_probability_score(f, x, classes) if score is None
       else (lambda out: score(out, x)))
  return _ranked_curve(f, x, rank, n, eta, num_steps=num_steps,
                       insertion=mode == 'insertion', score=s)


def rank_order(importance, *, key):
  """Each component's rank, 0 = most important; ties in random order.

  Args:
    importance: ``(B, *m)``.
    key: PRNG key of the tie-break.

  Returns:
    int32 ranks ``(B, *m)``, a permutation of ``0 .. prod(m) - 1`` per example.
  """
  s = _flat(importance)
  jitter = jax.random.uniform(key, s.shape)
  order = jnp.lexsort((jitter, -s), axis=-1)  # last key sorts first
  rank = jnp.argsort(order, axis=-1).astype(jnp.int32)
  return rank.reshape(importance.shape)


# ----------------------------------------------------------------------------
# Removal operators: ``removal(key, x) -> eta``, what a removed component
# becomes. Not only the noise a LAN was trained with, so that no method is
# scored on its own corruption only.


def removal_by_noise(noise) -> Callable:
  """Replacement drawn from a lanjax noise H (one sample per example)."""
  return lambda key, x: noise.sample(key, x, 1)[0]


def removal_by_mean() -> Callable:
  """Replacement by each example's mean value (per channel for ndim >= 3)."""
  def removal(key, x):
    del key
    axes = tuple(range(1, x.ndim - 1)) if x.ndim >= 3 else (1,)
    return jnp.broadcast_to(x.mean(axes, keepdims=True), x.shape)
  return removal


def removal_by_blur(sigma: float = 2.0) -> Callable:
  """Replacement by a Gaussian blur of the input (std ``sigma`` components).

  Blurs along the spatial axes (all but batch and, for ndim >= 3, channel),
  separably, with edge padding: the information is removed, the low
  frequencies stay in the input's distribution.
  """
  if sigma <= 0:
    raise ValueError(f'sigma must be > 0, got {sigma}.')
  radius = max(int(math.ceil(3 * sigma)), 1)
  taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
  taps = taps / taps.sum()

  def removal(key, x):
    del key
    axes = range(1, x.ndim - 1) if x.ndim >= 3 else (1,)
    for a in axes:
      pad = [(0, 0)] * x.ndim
      pad[a] = (radius, radius)
      xp = jnp.pad(x, pad, mode='edge')
      x = sum(float(w) * jax.lax.slice_in_dim(xp, i, i + x.shape[a], axis=a)
              for i, w in enumerate(taps))
    return x
  return removal


# ----------------------------------------------------------------------------
# Statistics.


def rank_correlation(a, b):
  """Spearman rank correlation of two maps, per example.

  Ties get their average rank. Two constant maps (nothing to rank, nothing
  changed) correlate 1; a constant map against a varying one, 0.

  Args:
    a: ``(B, ...)``.
    b: ``(B, ...)``, same number of components per example.

  Returns:
    ``(B,)`` correlations in ``[-1, 1]``.
  """
  a, b = _flat(jnp.asarray(a)), _flat(jnp.asarray(b))
  if a.shape != b.shape:
    raise ValueError(f'The maps have {a.shape} and {b.shape} components '
                     '(batch, per example); they must match.')
  return _rank_correlation(a, b)


@jax.jit  # eager, the sort and searches cost ~0.5 s per call
def _rank_correlation(a, b):
  ra, rb = _average_ranks(a), _average_ranks(b)
  const_a = ra.max(-1) == ra.min(-1)
  const_b = rb.max(-1) == rb.min(-1)
  ra = ra - ra.mean(-1, keepdims=True)
  rb = rb - rb.mean(-1, keepdims=True)
  denom = jnp.sqrt((ra ** 2).sum(-1) * (rb ** 2).sum(-1))
  corr = (ra * rb).sum(-1) / jnp.where(const_a | const_b, 1.0, denom)
  return jnp.where(const_a | const_b, (const_a & const_b).astype(corr.dtype),
                   corr)


def _average_ranks(s):
  """``(B, n)`` -> ranks ``0 .. n-1``, ties sharing their mean rank."""
  sorted_s = jnp.sort(s, -1)
  search = jax.vmap(jnp.searchsorted, in_axes=(0, 0, None))
  lo = search(sorted_s, s, 'left')
  hi = search(sorted_s, s, 'right')
  return (lo + hi - 1).astype(jnp.float32) / 2


def bootstrap_ci(values, *, seed=0, num: int = 1000, level: float = 0.95):
  """Mean of ``values`` and a percentile-bootstrap confidence interval.

  Host-side (NumPy), over the first axis: examples are resampled with
  replacement ``num`` times.

  Args:
    values: ``(N,)`` per-example values (finite).
    seed: int seed, or a JAX PRNG key.
    num: bootstrap resamples.
    level: coverage of the interval.

  Returns:
    ``(mean, low, high)`` floats; with one value, ``low == high == mean``.
  """
  v = np.asarray(values, np.float64).reshape(-1)
  if v.size == 0:
    raise ValueError('bootstrap_ci needs at least one value, got none.')
  if not np.isfinite(v).all():
    raise ValueError(f'bootstrap_ci got {int((~np.isfinite(v)).sum())} '
                     'non-finite values; drop or fix them first.')
  if not 0 < level < 1:
    raise ValueError(f'level must be in (0, 1), got {level}.')
  if not isinstance(seed, (int, np.integer)):
    seed = np.asarray(jax.random.key_data(seed)).ravel().tolist()
  rng = np.random.default_rng(seed)
  means = v[rng.integers(0, v.size, (num, v.size))].mean(-1)
  alpha = (1 - level) / 2
  low, high = np.quantile(means, [alpha, 1 - alpha])
  return float(v.mean()), float(low), float(high)


def mask_spread(masks) -> dict[str, jax.Array]:
  r"""How much masks change between inputs, relative to their mean.

  .. math:: \mathrm{spread} = \frac{\mathrm{mean}_j\, \mathrm{std}_n A_{nj}}
                                   {\mathrm{mean}_{n,j} A_{nj}}

  0 for a mask that is the same on every input (Pong's autoencoder, Fig. 5);
  the translated-MNIST and Pong experiments both report it, so that one
  experiment's number can be read against the other's.

  Args:
    masks: ``(N, ...)`` masks (or importance maps) of ``N >= 2`` inputs.

  Returns:
    ``{'relative_spread': scalar, 'std': (...) per-component std over the
    inputs, 'mean': (...) per-component mean}``.
  """
  masks = jnp.asarray(masks, jnp.float32)
  if masks.ndim < 2 or masks.shape[0] < 2:
    raise ValueError(f'masks must be (N, ...) with N >= 2 inputs; got shape '
                     f'{masks.shape}.')
  std = masks.std(0)
  mean = masks.mean(0)
  overall = mean.mean()
  return {'relative_spread': std.mean() / jnp.where(overall > 0, overall, 1.0),
          'std': std, 'mean': mean}
