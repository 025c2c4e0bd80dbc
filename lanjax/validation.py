"""Input checks that fail early, on the host, with a message that says what to fix.

* `check_finite` - no NaN or inf anywhere in a pytree of arrays;
* `check_range` - values inside a stated range (e.g. images in ``[0, 1]``);
* `check_lan_setup` - shapes of F, A, x and the noise agree, checked with
  `jax.eval_shape` (nothing is computed or compiled);
* `check_array`, `check_scalar`, `check_mask` - the Python-level argument
  checks of the pure API (`corrupt`, `lan_loss`, `lan_terms`, the noise
  samplers), run before tracing.

Masks outside [0, 1] make eq. 2 extrapolate (``x~`` leaves the segment
between ``x`` and the noise) and the objective unbounded below (the
``-beta * mean(A)`` reward grows without limit). The pure API rejects them
where the mask is concrete (an eager call). Under `jax.jit` or `jax.grad` the
mask is traced and cannot be looked at; for a checked mode, call
``check_range(mask, low=0., high=1.)`` inside the function and wrap it in
`jax.experimental.checkify.checkify` (see `check_range`).

`check_finite` and `check_range` work on concrete arrays (NumPy or JAX,
outside `jax.jit`). Inside a jitted function they emit `checkify` checks
instead, which report once the function is wrapped in
`jax.experimental.checkify.checkify`.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from lanjax import losses as losses_lib


def _float_leaves(tree):
  """``[(path string, leaf)]`` for the floating-point array leaves of ``tree``."""
  out = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    dtype = getattr(leaf, 'dtype', None)
    if dtype is None:
      if isinstance(leaf, (float, complex)):
        dtype = np.asarray(leaf).dtype
      else:
        continue
    if jnp.issubdtype(dtype, jnp.inexact):
      out.append((jax.tree_util.keystr(path), leaf))
  return out


def _is_tracer(x) -> bool:
  return isinstance(x, jax.core.Tracer)


def check_finite(tree, *, name: str = 'input') -> None:
  """Raises ValueError if any floating-point value in ``tree`` is NaN or inf.

  Args:
    tree: an array or a pytree of arrays (NumPy or JAX); integer and boolean
      leaves are skipped.
    name: what ``tree`` is, used in the message (e.g. ``'MNIST train images'``).

  Raises:
    ValueError naming the leaf (its pytree path), how many values are NaN and
    infinite, and the index of the first one.

  Inside `jax.jit` the check becomes a `jax.experimental.checkify` check:
  wrap the function in ``checkify.checkify`` and call ``err.throw()``.

  Example:
    >>> import numpy as np
    >>> check_finite({'x': np.ones(3)})
    >>> check_finite({'x': np.array([1., np.nan])})
    Traceback (most recent call last):
    ...
    ValueError: input['x'] holds 1 NaN and 0 infinite values out of 2 (first at index (1,)). ...
  """
  for path, leaf in _float_leaves(tree):
    where = f'{name}{path}'
    if _is_tracer(leaf):
      from jax.experimental import checkify  # pylint: disable=g-import-not-at-top
      checkify.check(jnp.all(jnp.isfinite(leaf)),
                     f'{where} holds NaN or infinite values.')
      continue
    if isinstance(leaf, jax.Array) and bool(jnp.all(jnp.isfinite(leaf))):
      continue  # reduced on its device: no copy of a large array to the host
    arr = np.asarray(leaf)
    finite = np.isfinite(arr)
    if finite.all():
      continue
    n_nan = int(np.isnan(arr).sum())
    n_inf = int(np.isinf(arr).sum())
    first = tuple(int(i) for i in np.argwhere(~finite)[0])
    raise ValueError(
        f'{where} holds {n_nan} NaN and {n_inf} infinite values out of '
        f'{arr.size} (first at index {first}). Training on them would make '
        'every loss and gradient NaN: clean or drop those values (e.g. '
        'np.nan_to_num, or filter the examples) before passing them in.')


def check_range(x, *, low: float, high: float, name: str = 'input',
                hint: str = '') -> None:
  """Raises ValueError unless every value of ``x`` lies in ``[low, high]``.

  NaN and inf are reported as such (see `check_finite`) first.

  Args:
    x: an array (NumPy or JAX) or a pytree of arrays.
    low: the smallest allowed value.
    high: the largest allowed value.
    name: what ``x`` is, used in the message.
    hint: optional advice appended to the message, e.g. how to rescale.

  Raises:
    ValueError with the observed minimum and maximum and the count of values
    outside the range.

  Example:
    >>> import numpy as np
    >>> check_range(np.array([0., 0.5, 1.]), low=0., high=1.)
  """
  check_finite(x, name=name)
  for path, leaf in _numeric_leaves(x):
    where = f'{name}{path}'
    if _is_tracer(leaf):
      from jax.experimental import checkify  # pylint: disable=g-import-not-at-top
      checkify.check(jnp.all((leaf >= low) & (leaf <= high)),
                     f'{where} has values outside [{low}, {high}].')
      continue
    arr = np.asarray(leaf)
    if arr.size == 0:
      continue
    outside = (arr < low) | (arr > high)
    if outside.any():
      raise ValueError(
          f'{where} must lie in [{low}, {high}] but has {int(outside.sum())} '
          f'of {arr.size} values outside it (min {arr.min()}, max '
          f'{arr.max()}).' + (f' {hint}' if hint else ''))


def _numeric_leaves(tree):
  """``[(path string, leaf)]`` for the integer and floating array leaves."""
  out = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    if isinstance(leaf, (int, float)) and not isinstance(leaf, bool):
      leaf = np.asarray(leaf)
    dtype = getattr(leaf, 'dtype', None)
    if dtype is not None and (jnp.issubdtype(dtype, jnp.integer)
                              or jnp.issubdtype(dtype, jnp.floating)):
      out.append((jax.tree_util.keystr(path), leaf))
  return out


def check_lan_setup(
    f: Callable,
    a: Callable,
    x,
    noise,
    *,
    num_samples: int = 1,
    output_loss: Callable = losses_lib.softmax_cross_entropy,
    chunk_size: Optional[int] = None,
) -> dict[str, Any]:
  """Checks that F, A, the inputs and the noise fit together, without running.

  Traces one evaluation of the LAN objective (eq. 3) with `jax.eval_shape`, so
  a mismatch is reported before anything is compiled or computed, with a
  message that names the shapes involved:

  * ``x`` has a batch axis, and F returns one output per example;
  * A's mask has a floating dtype, the batch axis of ``x`` and broadcasts to
    it (`lanjax.corruption.check_broadcastable`);
  * the noise draws have ``x``'s shape (`lanjax.noise`);
  * F's output has the same shape on ``x`` and on the corrupted ``x~``.

  Args:
    f: the black box, ``f(x) -> output`` of shape ``(B, *l)``.
    a: the attention network, ``a(x) -> mask`` of shape ``(B, *m)``.
    x: a batch of inputs ``(B, *d)`` (arrays or `jax.ShapeDtypeStruct`).
    noise: a noise distribution (`lanjax.noise`, with ``sample``) or an array
      of noise samples ``(K, B, *d)``.
    num_samples: ``K``, noise samples drawn from a distribution.
    output_loss: ``L_F``, per example.
    chunk_size: as in `lanjax.lan_loss`.

  Returns:
    ``{'mask', 'noise', 'output', 'fidelity_loss'}``: the
    `jax.ShapeDtypeStruct` of A(x), the noise samples, F(x) and the
    per-example fidelity loss (the first term of eq. 3).

  Raises:
    ValueError describing the first mismatch found.

  Example:
    >>> import jax, jax.numpy as jnp, lanjax
    >>> f = lambda x: x @ jnp.ones((4, 3))
    >>> a = lambda x: jnp.full(x.shape, 0.5)
    >>> shapes = lanjax.check_lan_setup(f, a, jnp.ones((2, 4)),
    ...                                 lanjax.ConstantNoise(0.), num_samples=3)
    >>> shapes['noise'].shape
    (3, 2, 4)
  """
  from lanjax import corruption  # pylint: disable=g-import-not-at-top
  from lanjax import objective  # pylint: disable=g-import-not-at-top
  x_shape = tuple(jnp.shape(x))
  if len(x_shape) < 1:
    raise ValueError(
        f'x has shape {x_shape}; it must be a batch (B, *d) with the examples '
        'on the first axis (add one with x[None]).')

  def run(x, noise):
    target = f(x)
    t_shape = tuple(jnp.shape(target))
    if not t_shape or t_shape[0] != x_shape[0]:
      raise ValueError(
          f'F maps the batch x of shape {x_shape} to an output of shape '
          f'{t_shape}; it must return one output per example, shape '
          f'({x_shape[0]}, ...).')
    mask = a(x)
    m_shape = tuple(jnp.shape(mask))
    if not jnp.issubdtype(jnp.result_type(mask), jnp.floating):
      raise ValueError(
          f'A returns a mask of dtype {jnp.result_type(mask)}; it must be a '
          'floating-point mask in [0, 1] (e.g. a sigmoid output).')
    corruption.check_broadcastable(m_shape, x_shape)
    if hasattr(noise, 'sample'):
      eta = noise.sample(jax.random.key(0), x, num_samples)
    else:
      eta = noise
    fidelity_loss, _ = objective.lan_terms(
        f, x, mask, eta, output_loss=output_loss, target=target,
        chunk_size=chunk_size)
    return {'mask': mask, 'noise': eta, 'output': target,
            'fidelity_loss': fidelity_loss}

  return jax.eval_shape(run, x, noise)


# ----------------------------------------------------------------------------
# Argument checks of the pure API (before tracing).


def _container_hint(value) -> str:
  return (f'a {type(value).__name__}; pass an array instead (e.g. '
          'jnp.asarray(...), or jnp.stack for a list of examples)')


def check_array(x, *, name: str, min_ndim: int = 0, batch: bool = False):
  """Checks that ``x`` is an array (not a list, dict or string).

  Args:
    x: the argument.
    name: its name in the message, e.g. ``'x'``.
    min_ndim: the fewest axes it may have.
    batch: ``x`` holds a batch on its first axis, which must not be empty.

  Raises:
    TypeError for a container, string or None; ValueError for too few axes
    or an empty batch. Tracers (inside jit/grad) pass: only their static
    shape is checked.
  """
  if isinstance(x, (list, tuple, dict, set, str, bytes)) or x is None:
    raise TypeError(f'{name} must be an array, got {_container_hint(x)}.')
  if not hasattr(x, 'shape'):
    if isinstance(x, (bool, int, float, complex, np.generic)):
      shape = ()
    else:
      raise TypeError(
          f'{name} must be an array, got a {type(x).__name__} ({x!r:.80}).')
  else:
    shape = tuple(x.shape)
  if len(shape) < min_ndim:
    raise ValueError(
        f'{name} has shape {shape} but needs at least {min_ndim} axes'
        + (' (a batch: add one with x[None])' if batch else '') + '.')
  if batch and shape and shape[0] == 0:
    raise ValueError(
        f'{name} is an empty batch (shape {shape}): the objective averages '
        'over its examples and would be NaN. Pass at least one example.')


def check_scalar(value, *, name: str, positive: bool = False,
                 nonnegative: bool = False) -> None:
  """Checks a Python-level scalar argument such as ``beta``.

  Accepts a Python or NumPy number or a 0-d array; a traced value (inside
  jit/grad) is checked only for its shape.

  Raises:
    TypeError for bools, strings, containers, arrays with axes; ValueError
    for NaN/inf, a value <= 0 where ``positive``, < 0 where
    ``nonnegative``.
  """
  if isinstance(value, bool) or isinstance(value, (str, bytes, list, tuple,
                                                   dict)) or value is None:
    raise TypeError(
        f'{name} must be a number, got '
        f'{value!r:.80} ({type(value).__name__}).')
  if hasattr(value, 'shape') and tuple(value.shape) != ():
    raise TypeError(
        f'{name} must be a scalar, got an array of shape {tuple(value.shape)}.')
  if _is_tracer(value):
    return
  try:
    v = float(np.asarray(value))
  except (TypeError, ValueError):
    raise TypeError(
        f'{name} must be a number, got {value!r:.80} '
        f'({type(value).__name__}).') from None
  if not np.isfinite(v):
    raise ValueError(f'{name} must be finite, got {v}.')
  if (positive and v <= 0) or (nonnegative and v < 0):
    raise ValueError(
        f'{name} must be {"> 0" if positive else ">= 0"}, got {v}.' + (
            ' beta weighs the reward for a large mask (eq. 3); with beta < 0 '
            'corruption is penalised and the best mask corrupts nothing. '
            'Use beta > 0 (0 leaves the fidelity term alone).'
            if name == 'beta' else ''))


def check_mask(mask, *, name: str = 'mask') -> None:
  """Rejects a concrete mask with values outside [0, 1] (see module doc).

  A traced mask is not checked here; use `check_range` under `checkify`.
  """
  if _is_tracer(mask) or not hasattr(mask, 'dtype'):
    return
  # On the host with NumPy: a concrete mask may be a constant inside a jit
  # trace, where jnp operations would be staged.
  check_range(np.asarray(mask), low=0.0, high=1.0, name=f'The {name} A(x)', hint=(
      'Outside [0, 1], eq. 2 extrapolates beyond the input and the noise and '
      'the objective is unbounded. Squash A\'s output into [0, 1] (e.g. '
      'jax.nn.sigmoid), or jnp.clip it.'))


def output_leaves(out, *, what: str):
  """The array leaves of F's output (an array or a pytree of arrays).

  Raises:
    TypeError naming what F returned when it is not arrays.
  """
  leaves = jax.tree.leaves(out)
  bad = [l for l in leaves if not hasattr(l, 'shape')]
  if out is None or not leaves or bad:
    got = type(bad[0]).__name__ if bad else type(out).__name__
    raise TypeError(
        f'F returned {got} on {what}; F must return an array (B, *l) or a '
        'pytree of arrays (e.g. a dict of logits), one row per example.')
  return leaves
