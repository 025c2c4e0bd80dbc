r"""One evaluation protocol for every attribution method.

`compare` runs each explainer on the same black box and the same examples and
scores its maps with metrics that never ask which method made them:

* faithfulness: deletion and insertion curves and their areas
  (`lanjax.metrics.perturbation_curve`, RISE protocol) under every removal
  operator given: the experiment's own noise H and at least one operator a
  LAN was not trained on (blur, mean value), so that no method is scored on
  its own corruption only;
* localisation where a ground-truth region exists: pointing game and mass in
  region (`lanjax.metrics`);
* sanity (Adebayo et al. 2018): cascading randomisation of F's parameters
  from the output layer down, and the Spearman rank correlation between the
  maps of the trained and the randomised F. A method whose maps do not
  change fails;
* cost: wall time per explained example after compilation.

Every number comes with a bootstrap confidence interval over the examples
(over repeats for the time). The result is a JSON-serialisable dict;
`markdown_table` prints it and `lanjax.experiments.figures.perturbation_curves`
plots its curves.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from lanjax import attribution, metrics
  >>> f_apply = lambda p, x: x.reshape(x.shape[0], -1) @ p['w']
  >>> params = {'w': jax.random.normal(jax.random.key(0), (16, 3))}
  >>> x = jax.random.uniform(jax.random.key(1), (8, 4, 4, 1))
  >>> table = compare(
  ...     {'gradient': attribution.explainer('gradient'),
  ...      'random': attribution.explainer('random')},
  ...     f_apply, params, x, key=jax.random.key(2),
  ...     removals={'zero': metrics.removal_by_mean()}, num_steps=4,
  ...     time_repeats=1, num_bootstrap=100)
  >>> sorted(table['methods'])
  ['gradient', 'random']
"""

from __future__ import annotations

import functools
import time
from typing import Callable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lanjax import metrics as metrics_lib
from lanjax.attribution import check_count


# ----------------------------------------------------------------------------
# Cascading randomisation of F's parameters.


def layer_groups(params) -> list[str]:
  """Names of the parameter groups (layers) of a pytree, in flatten order.

  A leaf's group is its path without its last key (``convs/0/kernel`` ->
  ``convs/0``; attribute keys such as NNX's ``.value`` are skipped); a
  top-level leaf is its own group.
  """
  names = []
  for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = _group(path)
    if name not in names:
      names.append(name)
  return names


def _group(path) -> str:
  keys = [str(getattr(k, 'key', getattr(k, 'idx', None)))
          for k in path if not isinstance(k, jax.tree_util.GetAttrKey)]
  return '/'.join(keys[:-1]) if len(keys) > 1 else '/'.join(keys)


@jax.jit
def _redraw(v, key, step, i):
  """``v`` redrawn from a normal with its own mean and std (one compiled
  call per leaf shape, not one eager op per operation)."""
  k = jax.random.fold_in(jax.random.fold_in(key, step), i)
  return (v.mean() + v.std() * jax.random.normal(k, v.shape, v.dtype)
          ).astype(v.dtype)


def cascading_randomization(params, key, *,
                            order: Optional[Sequence[str]] = None):
  """F's parameters with more and more layers re-initialised, top first.

  Each leaf of a randomised layer is redrawn from a normal distribution with
  the leaf's own mean and standard deviation (its scale is kept, what it
  learned is lost).

  Args:
    params: a pytree of arrays (an NNX state, a Linen param dict, ...).
    key: PRNG key.
    order: group names (see `layer_groups`), output layer first; default the
      reverse flatten order, which puts the last layer first for NNX states
      and for dicts whose layer names sort in depth order.

  Returns:
    ``[(group, params)]``: the i-th has groups ``order[:i + 1]`` randomised.
  """
  groups = layer_groups(params)
  order = list(reversed(groups)) if order is None else list(order)
  unknown = [g for g in order if g not in groups]
  if unknown:
    raise ValueError(f'order names groups {unknown} that are not in the '
                     f'parameters; the groups are {groups}.')
  leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  names = [_group(path) for path, _ in leaves]
  values = [leaf for _, leaf in leaves]
  cascade = []
  for step, group in enumerate(order):
    for i, name in enumerate(names):
      if name == group:
        values[i] = _redraw(jnp.asarray(values[i]), key, step, i)
    cascade.append((group, jax.tree_util.tree_unflatten(treedef, values)))
  return cascade


# ----------------------------------------------------------------------------
# The protocol.


def _ci(values, *, seed, num, level):
  mean, low, high = metrics_lib.bootstrap_ci(values, seed=seed, num=num,
                                             level=level)
  return {'mean': mean, 'low': low, 'high': high}


def _batches(n: int, batch_size: Optional[int]):
  size = n if batch_size is None else batch_size
  return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _localisation_map(importance, region):
  """Positive evidence of ``importance`` on ``region``'s grid."""
  s = jnp.maximum(importance, 0)
  while s.ndim > region.ndim:
    s = s.mean(-1)
  return jnp.broadcast_to(s, region.shape)


def time_per_example(fn: Callable, *args, repeats: int = 3) -> list[float]:
  """Wall seconds per example of ``fn(*args)`` (compiled first), per repeat.

  ``args[1]`` is the batch; each repeat's time is divided by its size.
  """
  check_count('repeats', repeats)
  jax.block_until_ready(fn(*args))  # compile and warm up
  out = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    out.append((time.perf_counter() - start) / args[1].shape[0])
  return out


def compare(explainers: Mapping[str, Callable], f_apply: Callable, params, x,
            *, key, removals: Mapping[str, Callable], region=None,
            num_steps: int = 20, randomize: Optional[Callable] = None,
            score: Optional[Callable] = None,
            batch_size: Optional[int] = None, time_repeats: int = 3,
            num_bootstrap: int = 1000, level: float = 0.95,
            sanity_threshold: float = 0.5) -> dict:
  """Scores every explainer on the same F and examples; see the module doc.

  Args:
    explainers: ``{name: explain(f, x, key) -> importance}`` (e.g.
      `lanjax.attribution.explainer`); maps ``(B, *m)`` broadcastable to x.
    f_apply: ``f_apply(params, x) -> output``; F is
      ``functools.partial(f_apply, params)``.
    params: F's trained parameters (any pytree).
    x: ``(N, *d)`` the examples.
    key: PRNG key; every method gets the same keys (common random numbers).
    removals: ``{name: removal(key, x) -> eta}`` operators (see
      `lanjax.metrics.removal_by_noise` and its siblings).
    region: optional ``(N, *r)`` boolean ground truth (e.g.
      `lanjax.metrics.box_region`); maps are averaged over trailing axes
      (channels) onto its grid and clipped at 0 (positive evidence).
    num_steps: steps of the deletion and insertion curves.
    randomize: optional ``randomize(params, key) -> [(name, params)]``, e.g.
      `cascading_randomization`; the last entry should be fully randomised
      (it decides the sanity verdict). Entries may also be F trained on
      permuted labels.
    score: optional ``score(out, x) -> (B,)`` tracked by the curves (default:
      F's probability of its clean prediction).
    batch_size: examples per call (memory bound); default all at once.
    time_repeats: timed repeats on the first batch.
    num_bootstrap: bootstrap resamples of every interval.
    level: the intervals' coverage.
    sanity_threshold: a method passes the sanity check when the upper bound
      of its rank correlation with the fully randomised F's maps is below it.

  Returns:
    ``{'num_examples', 'num_steps', 'level', 'metrics': [names],
    'methods': {name: {metric: {'mean', 'low', 'high'}, 'sanity_pass'}},
    'curves': {name: {'deletion/<removal>': [mean curve], ...}}}``: plain
    Python values (JSON-serialisable).
  """
  if not explainers:
    raise ValueError('explainers is empty; pass {name: explain(f, x, key)}.')
  if not removals:
    raise ValueError('removals is empty; pass at least one removal operator '
                     '(e.g. {"blur": lanjax.metrics.removal_by_blur()}).')
  check_count('num_steps', num_steps)
  check_count('batch_size', batch_size, allow_none=True)
  x = jnp.asarray(x)
  if region is not None and jnp.shape(region)[0] != x.shape[0]:
    raise ValueError(f'region has {jnp.shape(region)[0]} examples but x has '
                     f'{x.shape[0]}; give one region per example.')
  batches = _batches(x.shape[0], batch_size)
  key, cascade_key = jax.random.split(key)
  cascade = [] if randomize is None else list(randomize(params, cascade_key))
  curve_fns = {
      (mode, r): jax.jit(functools.partial(
          _curve, f_apply, removal=removals[r], mode=mode,
          num_steps=num_steps, score=score))
      for mode in ('deletion', 'insertion') for r in removals}
  ci = functools.partial(_ci, seed=0, num=num_bootstrap, level=level)
  methods, curves = {}, {}
  for name, explain in explainers.items():
    fn = jax.jit(functools.partial(_explain, explain, f_apply))
    keys = [jax.random.fold_in(key, i) for i in range(len(batches))]
    maps = [fn(params, x[b], jax.random.fold_in(k, 0))
            for b, k in zip(batches, keys)]
    values, curves[name] = {}, {}
    for (mode, r), curve_fn in curve_fns.items():
      out = [curve_fn(params, x[b], m, jax.random.fold_in(k, 1))
             for b, m, k in zip(batches, maps, keys)]
      curve = np.concatenate([np.asarray(c) for c, _ in out], axis=1)
      values[f'{mode}_auc/{r}'] = np.concatenate([np.asarray(a)
                                                  for _, a in out])
      curves[name][f'{mode}/{r}'] = curve.mean(1).tolist()
    if region is not None:
      grid = [_localisation_map(m, jnp.asarray(region)[b])
              for b, m in zip(batches, maps)]
      regions = [jnp.asarray(region)[b] for b in batches]
      values['pointing_game'] = np.concatenate([
          metrics_lib.pointing_game(g, r) for g, r in zip(grid, regions)])
      values['mass_in_region'] = np.concatenate([
          metrics_lib.mass_in_region(g, r) for g, r in zip(grid, regions)])
    for layer, p in cascade:
      values[f'sanity_rank_corr/{layer}'] = np.concatenate([
          metrics_lib.rank_correlation(
              m, fn(p, x[b], jax.random.fold_in(k, 0)))
          for b, m, k in zip(batches, maps, keys)])
    values['seconds_per_example'] = time_per_example(
        fn, params, x[batches[0]], jax.random.fold_in(keys[0], 0),
        repeats=time_repeats)
    methods[name] = {m: ci(v) for m, v in values.items()}
    if cascade:
      last = methods[name][f'sanity_rank_corr/{cascade[-1][0]}']
      methods[name]['sanity_pass'] = bool(last['high'] < sanity_threshold)
  return {
      'num_examples': int(x.shape[0]), 'num_steps': int(num_steps),
      'level': float(level),
      'metrics': [m for m in next(iter(methods.values()))
                  if m != 'sanity_pass'],
      'methods': methods, 'curves': curves,
  }


def _explain(explain, f_apply, params, x, key):
  return explain(functools.partial(f_apply, params), x, key)


def _curve(f_apply, params, x, importance, key, **kwargs):
  return metrics_lib.perturbation_curve(
      functools.partial(f_apply, params), x, importance, key=key, **kwargs)


def markdown_table(table: dict, *, metrics: Optional[Sequence[str]] = None,
                   digits: int = 3) -> str:
  """The `compare` table as Markdown: methods by metrics, ``mean [low, high]``.

  Args:
    table: `compare`'s result.
    metrics: the columns (default all, in the table's order).
    digits: significant digits.
  """
  metrics = list(table['metrics'] if metrics is None else metrics)
  has_sanity = any('sanity_pass' in v for v in table['methods'].values())
  header = ['method', *metrics] + (['sanity'] if has_sanity else [])
  rows = ['| ' + ' | '.join(header) + ' |',
          '|' + '---|' * len(header)]
  for name, values in table['methods'].items():
    cells = [name]
    for m in metrics:
      v = values.get(m)
      cells.append('' if v is None else
                   f'{v["mean"]:.{digits}g} [{v["low"]:.{digits}g}, '
                   f'{v["high"]:.{digits}g}]')
    if has_sanity:
      cells.append({True: 'pass', False: 'FAIL'}.get(
          values.get('sanity_pass'), ''))
    rows.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(rows)
