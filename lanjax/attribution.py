r"""Attribution methods: the baselines beside the amortized LAN, one interface.

Every method is a pure function of the black box and a batch,

.. code-block:: python

  importance = method(f, x, *, key=None, target=None, score=None, **settings)

returning an importance map ``(B, ...)`` of ``x``'s shape or one that
broadcasts to it (e.g. ``(B, H, W, 1)`` for RGB images): higher means more
important. ``f`` is any callable from a batch ``(B, *d)`` to outputs that
treats the examples of a batch independently (a network in inference mode).
Methods are jit- and vmap-safe; bind their settings with `functools.partial`
or pick them by name from `METHODS` (`explainer`). Random methods take a PRNG
``key``; the many-evaluation ones take ``chunk_size``, the number of
perturbations evaluated at once (F then sees ``chunk_size * B`` inputs), which
bounds memory without changing the result beyond float summation order. Its
default, 16, is also faster on CPUs than all at once (the working set stays in
cache); on accelerators larger chunks (or None, all at once) may be faster.

What is explained is explicit (`output_score`):

* classifiers (F returns logits ``(B, C)``): by default the log-probability of
  F's prediction on the clean input, ``log softmax(F(z))[argmax F(x)]``;
  ``target`` (``(B,)`` ints) picks other classes;
* any other F (e.g. an autoencoder): a per-example scalar the caller names,
  ``score(out, x) -> (B,)`` where ``out = F(z)`` for a perturbed batch ``z``
  and ``x`` is the clean batch being explained. The reconstruction loss
  :math:`L_F(F(\tilde{x}), F(x))` is no choice for gradient methods: it is
  minimal at :math:`\tilde{x} = x`, so its gradient there is zero. Name
  instead what F computes, e.g. ``score=lambda out, x: out[:, 3]`` (one
  output) or ``-((out - x) ** 2).sum(-1)`` (reconstruction of the input).

Methods: `gradient`, `gradient_x_input`, `smoothgrad` (a wrapper of any
method), `integrated_gradients`, `occlusion`, `rise`, `mask_optimisation` (the
LAN objective, eq. 3, optimised per example), `lan` (``1 - A(x)`` from a
trained A) and `random_map` (the chance reference).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lanjax import corruption
from lanjax import losses as losses_lib
from lanjax import noise as noise_lib
from lanjax import objective


# ----------------------------------------------------------------------------
# What is explained, and shared plumbing.


def output_score(f: Callable, x, *, target=None, score=None) -> Callable:
  """The explained quantity as a function of F's output, bound to ``x``.

  Args:
    f: the black box.
    x: the clean batch being explained, ``(B, *d)``.
    target: ``(B,)`` int classes whose log-probability is explained
      (classifiers only); defaults to F's prediction ``argmax F(x)``.
    score: ``score(out, x) -> (B,)``: explain this scalar instead (required
      when F does not return ``(B, C)`` logits).

  Returns:
    ``g(out) -> (B,)``: the explained scalar of each example, given F's
    output ``out`` on a perturbed copy of ``x``.

  Raises:
    ValueError: if F's output is not ``(B, C)`` and no ``score`` is given, or
      ``target`` does not have shape ``(B,)``.
  """
  if score is not None:
    if target is not None:
      raise ValueError('Pass either target= (a class of a classifier) or '
                       'score= (any scalar of the output), not both.')
    return lambda out: _check_scores(score(out, x), x)
  out = jax.eval_shape(f, x)
  if len(out.shape) != 2 or out.shape[0] != x.shape[0]:
    raise ValueError(
        f'F returns shape {out.shape} on a batch of shape {x.shape}; the '
        'default explained quantity is the log-probability of a class, which '
        'needs logits (B, C). For other outputs name the scalar to explain '
        'with score=lambda out, x: ... returning (B,).')
  if target is None:
    target = jnp.argmax(f(x), -1)
  target = jax.lax.stop_gradient(jnp.asarray(target))
  if target.shape != (x.shape[0],):
    raise ValueError(f'target must hold one class per example, shape '
                     f'{(x.shape[0],)}, got {target.shape}.')

  def log_prob(out):
    logp = jax.nn.log_softmax(out, -1)
    return jnp.take_along_axis(logp, target[:, None], -1)[:, 0]
  return log_prob


def _check_scores(s, x):
  if jnp.shape(s) != (x.shape[0],):
    raise ValueError(
        f'score(out, x) returned shape {jnp.shape(s)}; it must return one '
        f'scalar per example, shape {(x.shape[0],)}.')
  return s


def _bound(g):
  """``g(out)`` as a ``score=`` argument (ignores the perturbed batch)."""
  return lambda out, _: g(out)


def check_count(name: str, value, *, allow_none: bool = False):
  """Raises ValueError unless ``value`` is a positive int (or allowed None)."""
  if value is None and allow_none:
    return
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or (
      value < 1):
    extra = ' or None' if allow_none else ''
    raise ValueError(f'{name} must be a positive int{extra}, got {value!r}.')


def sum_over(fn: Callable, items, *, chunk_size: Optional[int] = None):
  """``sum_i fn(items[i])`` with at most ``chunk_size`` items at once.

  Items are vmapped within a chunk and accumulated over chunks in a
  `lax.scan` (a running sum: no stack of all results is kept).

  Args:
    fn: maps one item (a pytree slice of ``items``) to a pytree of arrays.
    items: a pytree of arrays with a common leading axis ``(N, ...)``.
    chunk_size: items evaluated at once; None evaluates all ``N`` at once.

  Returns:
    The pytree of sums.
  """
  check_count('chunk_size', chunk_size, allow_none=True)
  n = jax.tree.leaves(items)[0].shape[0]
  total = lambda chunk: jax.tree.map(lambda v: v.sum(0), jax.vmap(fn)(chunk))
  if chunk_size is None or chunk_size >= n:
    return total(items)
  num_full, rest = divmod(n, chunk_size)
  head = jax.tree.map(
      lambda v: v[:num_full * chunk_size].reshape(
          (num_full, chunk_size) + v.shape[1:]), items)
  first = jax.tree.map(lambda v: v[0], items)
  init = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                      jax.eval_shape(fn, first))
  acc, _ = jax.lax.scan(
      lambda acc, chunk: (jax.tree.map(jnp.add, acc, total(chunk)), None),
      init, head)
  if rest:
    tail = jax.tree.map(lambda v: v[num_full * chunk_size:], items)
    acc = jax.tree.map(jnp.add, acc, total(tail))
  return acc


def spatial_shape(x) -> tuple[int, ...]:
  """Axes a window or mask covers: all but batch and (ndim >= 3) channel.

  ``(B, H, W, C) -> (H, W)``; ``(B, L, C) -> (L,)``; ``(B, d) -> (d,)``. Maps
  over these axes get a trailing axis of 1 that broadcasts over channels.
  """
  return tuple(x.shape[1:-1]) if x.ndim >= 3 else tuple(x.shape[1:])


def _with_channel(m, x):
  """A map over `spatial_shape` axes, given the trailing channel axis."""
  return m[..., None] if x.ndim >= 3 else m


def _require_key(key, method: str):
  if key is None:
    raise ValueError(f'{method} is random: pass key=jax.random.key(...).')
  return key


def _grad(g, f, z):
  """Per-example gradient of the explained scalar at the batch ``z``."""
  return jax.grad(lambda z: g(f(z)).sum())(z)


# ----------------------------------------------------------------------------
# Gradient methods.


def gradient(f: Callable, x, *, key=None, target=None, score=None,
             absolute: bool = True):
  r"""Saliency: the gradient of the explained scalar with respect to ``x``.

  .. math:: \phi(x) = \left|\frac{\partial s(F(x))}{\partial x}\right|

  Args:
    f: the black box.
    x: ``(B, *d)``.
    key: unused (the method is deterministic).
    target: see `output_score`.
    score: see `output_score`.
    absolute: the magnitude (Simonyan et al. 2014, default) or, if False, the
      signed gradient.

  Returns:
    ``(B, *d)``.

  Example:
    >>> import jax.numpy as jnp
    >>> f = lambda x: x @ jnp.array([[1., 0.], [-2., 0.]])
    >>> gradient(f, jnp.zeros((1, 2)), score=lambda out, x: out[:, 0],
    ...          absolute=False)
    Array([[ 1., -2.]], dtype=float32)
  """
  del key
  x = jnp.asarray(x)
  g = _grad(output_score(f, x, target=target, score=score), f, x)
  return jnp.abs(g) if absolute else g


def gradient_x_input(f: Callable, x, *, key=None, target=None, score=None,
                     baseline=0.0):
  r"""Gradient times input (Shrikumar et al. 2016), signed.

  .. math:: \phi(x) = (x - x_0) \odot \frac{\partial s(F(x))}{\partial x}

  Args:
    f: the black box.
    x: ``(B, *d)``.
    key: unused.
    target: see `output_score`.
    score: see `output_score`.
    baseline: ``x_0``, broadcastable to ``x`` (0 gives the usual form).

  Returns:
    ``(B, *d)``.
  """
  del key
  x = jnp.asarray(x)
  g = gradient(f, x, target=target, score=score, absolute=False)
  return g * (x - baseline)


def smoothgrad(f: Callable, x, *, key, method: Union[str, Callable] = gradient,
               sigma: float = 0.15, num_samples: int = 32,
               chunk_size: Optional[int] = 16, target=None, score=None,
               **method_kwargs):
  r"""SmoothGrad (Smilkov et al. 2017): any method averaged over noisy inputs.

  .. math::
    \phi(x) = \frac{1}{n} \sum_{i=1}^n \phi_{\mathrm{method}}(x + \epsilon_i),
    \quad \epsilon_i \sim \mathcal{N}(0, (\sigma (\max x - \min x))^2)

  The explained scalar stays that of the clean input (e.g. the class F
  predicts on ``x``, not on each noisy copy).

  Args:
    f: the black box.
    x: ``(B, *d)``.
    key: PRNG key of the noise.
    method: the wrapped method (a function of this interface or a name in
      `METHODS`).
    sigma: noise standard deviation relative to each example's value range;
      0 returns the wrapped method's map.
    num_samples: ``n``.
    chunk_size: noisy copies evaluated at once (memory bound; None: all).
    target: see `output_score`.
    score: see `output_score`.
    **method_kwargs: settings of the wrapped method.

  Returns:
    The wrapped method's map, averaged.
  """
  key = _require_key(key, 'smoothgrad')
  check_count('num_samples', num_samples)
  if sigma < 0:
    raise ValueError(f'sigma must be >= 0, got {sigma}.')
  method = get_method(method) if isinstance(method, str) else method
  x = jnp.asarray(x)
  g = output_score(f, x, target=target, score=score)
  flat = x.reshape(x.shape[0], -1)
  scale = sigma * (flat.max(-1) - flat.min(-1))
  scale = scale.reshape((-1,) + (1,) * (x.ndim - 1))

  def one(k):
    noise_key, method_key = jax.random.split(k)
    noisy = x + scale * jax.random.normal(noise_key, x.shape, x.dtype)
    return method(f, noisy, key=method_key, score=_bound(g), **method_kwargs)

  keys = jax.random.split(key, num_samples)
  return sum_over(one, keys, chunk_size=chunk_size) / num_samples


def integrated_gradients(f: Callable, x, *, key=None, target=None, score=None,
                         baseline=0.0, num_steps: int = 64,
                         chunk_size: Optional[int] = 16):
  r"""Integrated gradients (Sundararajan et al. 2017), midpoint rule.

  .. math::
    \phi(x) = (x - x_0) \odot \frac{1}{m} \sum_{k=1}^{m}
      \nabla s\big(F(x_0 + \tfrac{k - 1/2}{m} (x - x_0))\big)

  Complete up to the quadrature error: the map sums to
  :math:`s(F(x)) - s(F(x_0))`.

  Args:
    f: the black box.
    x: ``(B, *d)``.
    key: unused.
    target: see `output_score`.
    score: see `output_score`.
    baseline: ``x_0``, an array broadcastable to ``x``.
    num_steps: ``m``, points on the path.
    chunk_size: path points evaluated at once (memory bound; None: all).

  Returns:
    ``(B, *d)``, signed.
  """
  del key
  check_count('num_steps', num_steps)
  x = jnp.asarray(x)
  g = output_score(f, x, target=target, score=score)
  x0 = jnp.broadcast_to(jnp.asarray(baseline, x.dtype), x.shape)
  alphas = (jnp.arange(num_steps, dtype=x.dtype) + 0.5) / num_steps
  total = sum_over(lambda a: _grad(g, f, x0 + a * (x - x0)), alphas,
                   chunk_size=chunk_size)
  return (x - x0) * total / num_steps


# ----------------------------------------------------------------------------
# Perturbation methods.


def _pair_like(v, n: int, name: str) -> tuple[int, ...]:
  t = tuple(v) if isinstance(v, (tuple, list)) else (v,) * n
  if len(t) != n:
    raise ValueError(f'{name} {v!r} needs one entry per spatial axis ({n}).')
  for s in t:
    check_count(name, s)
  return t


def _starts(dim: int, window: int, stride: int) -> list[int]:
  """Window starts along one axis, the last one flush with the end."""
  starts = list(range(0, dim - window + 1, stride))
  if starts[-1] != dim - window:
    starts.append(dim - window)
  return starts


def _noise_or_default(noise):
  return noise_lib.ConstantNoise(0.0) if noise is None else noise


def _noise_key(key, noise, method):
  if key is None and not isinstance(noise, noise_lib.ConstantNoise):
    raise ValueError(f'{method} with random noise {type(noise).__name__} '
                     'needs key=jax.random.key(...).')
  return jax.random.key(0) if key is None else key


def occlusion(f: Callable, x, *, key=None, target=None, score=None,
              window: Union[int, Sequence[int]] = 4,
              stride: Union[int, Sequence[int]] = 2, noise=None,
              chunk_size: Optional[int] = 16):
  r"""Occlusion (Zeiler & Fergus 2014): the score drop as windows are replaced.

  Each window ``W`` over the spatial axes is replaced by noise with
  `lanjax.corrupt` (mask 1 inside the window); each component gets the mean
  drop :math:`s(F(x)) - s(F(\tilde{x}_W))` of the windows that cover it.
  Windows start every ``stride`` and the last one is flush with the border, so
  every component is covered.

  Args:
    f: the black box.
    x: ``(B, *d)``; windows cover `spatial_shape` (all axes of a channel
      are replaced together).
    key: PRNG key of the noise (not needed for `ConstantNoise`).
    target: see `output_score`.
    score: see `output_score`.
    window: window size, an int or one per spatial axis.
    stride: step between windows, an int or one per spatial axis.
    noise: the replacement, a lanjax noise (`ConstantNoise(0.)` by default),
      sampled afresh for every window.
    chunk_size: windows evaluated at once (memory bound; None: all).

  Returns:
    ``(B, *spatial, 1)`` for inputs with channels, else ``(B, d)``.
  """
  x = jnp.asarray(x)
  spatial = spatial_shape(x)
  window = _pair_like(window, len(spatial), 'window')
  stride = _pair_like(stride, len(spatial), 'stride')
  for w, d in zip(window, spatial):
    if w > d:
      raise ValueError(f'window {window} is larger than the input {spatial}.')
  noise = _noise_or_default(noise)
  key = _noise_key(key, noise, 'occlusion')
  g = output_score(f, x, target=target, score=score)
  clean = g(f(x))
  grids = np.meshgrid(*[_starts(d, w, s) for d, w, s in
                        zip(spatial, window, stride)], indexing='ij')
  starts = jnp.asarray(np.stack([v.ravel() for v in grids], -1))
  index = jnp.arange(starts.shape[0])

  def one(item):
    i, start = item
    inside = functools.reduce(jnp.logical_and, [
        jnp.expand_dims((jnp.arange(d) >= s) & (jnp.arange(d) < s + w),
                        [j for j in range(len(spatial)) if j != a])
        for a, (d, s, w) in enumerate(zip(spatial, start, window))])
    m = _with_channel(inside.astype(x.dtype), x)[None]
    eta = noise.sample(jax.random.fold_in(key, i), x, 1)[0]
    drop = clean - g(f(corruption.corrupt(x, m, eta)))
    return drop.reshape((-1,) + (1,) * (m.ndim - 1)) * m, m[0]

  total, count = sum_over(one, (index, starts), chunk_size=chunk_size)
  return total / count


def rise(f: Callable, x, *, key, target=None, score=None,
         num_masks: int = 2000, grid_size: int = 7, keep: float = 0.5,
         noise=None, chunk_size: Optional[int] = 16):
  r"""RISE (Petsiuk et al. 2018): the score under random smooth masks.

  Each mask :math:`M \in [0, 1]` is a ``grid_size`` grid of Bernoulli(keep)
  cells, upsampled bilinearly to cells of ``ceil(dim / grid_size)`` and
  shifted at random (as in the paper); the input keeps ``x`` where ``M`` is
  high, ``x~ = corrupt(x, 1 - M, eta)``. The map is the score's average
  weighted by each component's mask,

  .. math:: \phi_i = \frac{\sum_n s(F(\tilde{x}_n)) M_{n,i}}{\sum_n M_{n,i}},

  the expected score given that component ``i`` was kept (the paper
  normalises by ``N * keep``; the ratio has less variance). The same masks
  serve every example of the batch.

  Args:
    f: the black box.
    x: ``(B, *d)``; masks cover `spatial_shape`.
    key: PRNG key of masks and noise.
    target: see `output_score`.
    score: see `output_score`.
    num_masks: ``N``.
    grid_size: cells per spatial axis of the low-resolution grid.
    keep: probability that a cell is kept.
    noise: the replacement of what is masked out, a lanjax noise
      (`ConstantNoise(0.)` by default), sampled afresh for every mask.
    chunk_size: masks evaluated at once (memory bound; None: all).

  Returns:
    ``(B, *spatial, 1)`` for inputs with channels, else ``(B, d)``.
  """
  key = _require_key(key, 'rise')
  check_count('num_masks', num_masks)
  check_count('grid_size', grid_size)
  if not 0 < keep < 1:
    raise ValueError(f'keep must be in (0, 1), got {keep}.')
  x = jnp.asarray(x)
  spatial = spatial_shape(x)
  noise = _noise_or_default(noise)
  g = output_score(f, x, target=target, score=score)

  def one(k):
    m = _with_channel(random_smooth_mask(k, spatial, grid_size=grid_size,
                                        keep=keep), x).astype(x.dtype)[None]
    eta = noise.sample(jax.random.fold_in(k, 1), x, 1)[0]
    s = g(f(corruption.corrupt(x, 1 - m, eta)))
    return s.reshape((-1,) + (1,) * (m.ndim - 1)) * m, m[0]

  keys = jax.random.split(key, num_masks)
  weighted, total = sum_over(one, keys, chunk_size=chunk_size)
  return weighted / jnp.maximum(total, 1e-12)


def random_smooth_mask(key, shape: Sequence[int], *, grid_size: int,
                       keep: float):
  """One RISE mask of ``shape``: an upsampled, shifted Bernoulli grid."""
  grid_key, shift_key = jax.random.split(jax.random.fold_in(key, 0))
  grid = jax.random.bernoulli(grid_key, keep, (grid_size,) * len(shape))
  cells = [math.ceil(d / grid_size) for d in shape]
  up = jax.image.resize(grid.astype(jnp.float32),
                        [(grid_size + 1) * c for c in cells], 'linear')
  shift = jax.random.randint(shift_key, (len(shape),), 0,
                             jnp.asarray(cells))
  return jax.lax.dynamic_slice(up, list(shift), list(shape))


# ----------------------------------------------------------------------------
# Mask methods: the LAN objective per example, and the amortized LAN.


def mask_optimisation(f: Callable, x, *, key, noise, beta: float,
                      num_steps: int = 300, learning_rate: float = 0.1,
                      num_samples: int = 8, mask_shape=None,
                      output_loss: Callable = losses_lib.softmax_cross_entropy,
                      init_logit: float = 0.0,
                      chunk_size: Optional[int] = None):
  r"""The LAN objective (eq. 3) minimised for each example's own mask.

  The sample-specific counterpart of the amortized LAN (cf. meaningful and
  extremal perturbations, Fong & Vedaldi 2017, 2019): each example gets mask
  logits :math:`\theta`, :math:`A = \sigma(\theta)`, optimised with Adam on

  .. math::
    \frac{1}{K} \sum_{k} L_F(F(A \eta_k + (1 - A) x), F(x)) - \beta \bar{A}

  with fresh noise every step (`lanjax.lan_terms`), in a `lax.scan` over
  steps. Examples do not interact (the batch objective is their sum).

  Args:
    f: the black box.
    x: ``(B, *d)``.
    key: PRNG key of the noise.
    noise: the noise H (`lanjax.ConstantNoise`, `lanjax.BootstrapNoise`).
    beta: the corruption reward, as in `lanjax.lan_loss`.
    num_steps: Adam steps.
    learning_rate: Adam's step size on the logits.
    num_samples: noise samples ``K`` per step.
    mask_shape: one example's mask shape, broadcastable to ``x.shape[1:]``
      (default: ``x.shape[1:]``).
    output_loss: ``L_F`` (`lanjax.losses`).
    init_logit: the logits' initial value (0: a mask of 0.5).
    chunk_size: noise samples evaluated at once (see `lanjax.lan_terms`).

  Returns:
    Importance ``1 - A``, ``(B, *mask_shape)``.
  """
  key = _require_key(key, 'mask_optimisation')
  check_count('num_steps', num_steps)
  check_count('num_samples', num_samples)
  if beta <= 0:
    raise ValueError(f'beta must be > 0, got {beta}.')
  x = jnp.asarray(x)
  mask_shape = tuple(x.shape[1:] if mask_shape is None else mask_shape)
  corruption.check_broadcastable((x.shape[0],) + mask_shape, x.shape)
  target = jax.lax.stop_gradient(f(x))
  tx = optax.adam(learning_rate)

  def loss(theta, k):
    eta = noise.sample(k, x, num_samples)
    return objective.lan_loss(
        f, x, jax.nn.sigmoid(theta), eta, beta=beta, output_loss=output_loss,
        target=target, reduction='sum', chunk_size=chunk_size)

  def step(state, i):
    theta, opt = state
    grads = jax.grad(loss)(theta, jax.random.fold_in(key, i))
    updates, opt = tx.update(grads, opt, theta)
    return (optax.apply_updates(theta, updates), opt), None

  theta = jnp.full((x.shape[0],) + mask_shape, init_logit, x.dtype)
  (theta, _), _ = jax.lax.scan(step, (theta, tx.init(theta)),
                               jnp.arange(num_steps))
  return 1.0 - jax.nn.sigmoid(theta)


def lan(f: Callable, x, *, mask_fn: Callable, key=None):
  """The amortized LAN's importance ``1 - A(x)`` from a trained mask function.

  Args:
    f: the black box (unused: A was trained on it).
    x: ``(B, *d)``.
    mask_fn: ``A``, mapping ``x`` to masks in ``[0, 1]`` broadcastable to it.
    key: unused.

  Returns:
    ``1 - A(x)``.
  """
  del f, key
  x = jnp.asarray(x)
  mask = mask_fn(x)
  corruption.check_broadcastable(jnp.shape(mask), x.shape)
  return 1.0 - mask


def random_map(f: Callable, x, *, key, map_shape=None):
  """The chance reference: i.i.d. uniform importance, ``(B, *map_shape)``.

  Args:
    f: unused.
    x: ``(B, *d)``.
    key: PRNG key.
    map_shape: one example's map shape (default ``x.shape[1:]``).
  """
  del f
  key = _require_key(key, 'random_map')
  shape = tuple(x.shape[1:] if map_shape is None else map_shape)
  return jax.random.uniform(key, (x.shape[0],) + shape)


# ----------------------------------------------------------------------------
# By name.


METHODS = {
    'gradient': gradient,
    'gradient_x_input': gradient_x_input,
    'smoothgrad': smoothgrad,
    'integrated_gradients': integrated_gradients,
    'occlusion': occlusion,
    'rise': rise,
    'mask_optimisation': mask_optimisation,
    'lan': lan,
    'random': random_map,
}


def get_method(name: str) -> Callable:
  """The method called ``name`` (see `METHODS`)."""
  try:
    return METHODS[name]
  except KeyError:
    raise ValueError(f'Unknown attribution method {name!r}; expected one of: '
                     f'{", ".join(METHODS)}.') from None


def explainer(name: Union[str, Callable], **settings: Any) -> Callable:
  """``explain(f, x, key) -> importance``: a method with its settings bound.

  The form `lanjax.evaluation.compare` takes.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> explain = explainer('integrated_gradients', num_steps=16)
    >>> f = lambda x: jnp.stack([x.sum(-1), -x.sum(-1)], -1)
    >>> explain(f, jnp.ones((2, 3)), jax.random.key(0)).shape
    (2, 3)
  """
  method = get_method(name) if isinstance(name, str) else name

  def explain(f, x, key):
    return method(f, x, key=key, **settings)
  return explain
