"""The LAN objective, eq. (3) of Grimm et al."""

from __future__ import annotations

import functools
from typing import Callable, Optional

import jax
import jax.extend  # jax.extend.core below; `import jax` alone lacks it
import jax.numpy as jnp
import numpy as np

from lanjax import corruption
from lanjax import losses as losses_lib


def lan_terms(
    f: Callable,
    x,
    mask,
    noise,
    *,
    output_loss: Callable = losses_lib.softmax_cross_entropy,
    target=None,
    chunk_size: Optional[int] = None,
    remat: bool = True,
):
  r"""The two terms of the LAN objective, per example.

  Returns ``(fidelity_loss, mask_mean)``, each ``(B,)``:

  .. math::
    \mathrm{fidelity\_loss}(x) = \frac{1}{K} \sum_{k=1}^K
        L_F(F(\tilde{x}_k), F(x)), \qquad
    \mathrm{mask\_mean}(x) = \overline{A(x)}

  with :math:`\tilde{x}_k = A(x) \eta_k + (1 - A(x)) x` (eq. 2). F sees the
  ``K`` corrupted copies of the batch as one batch of ``B * K`` inputs,
  ordered example-major (all samples of example 0 first), so F must treat
  the examples of a batch independently, as a trained network in inference
  mode does. With ``chunk_size``, F sees ``B * chunk_size`` inputs at a time.
  See `lan_loss` for the arguments (and for F returning a pytree).
  """
  from lanjax import validation  # pylint: disable=g-import-not-at-top
  if not callable(f):
    raise TypeError(f'f (the black box F) must be callable, got '
                    f'{type(f).__name__}.')
  if not callable(output_loss):
    raise TypeError(f'output_loss must be callable (output, target) -> (B,), '
                    f'got {type(output_loss).__name__}.')
  validation.check_array(x, name='x', min_ndim=1, batch=True)
  validation.check_array(mask, name='mask', min_ndim=1)
  validation.check_array(noise, name='noise (K samples per example, see '
                         'lanjax.noise)', min_ndim=2, batch=True)
  validation.check_mask(mask)
  x = jnp.asarray(x)
  mask = jnp.asarray(mask)
  noise = jnp.asarray(noise)
  corruption.check_broadcastable(mask.shape, x.shape)
  if mask.shape[:1] != x.shape[:1]:
    raise ValueError(
        f'The mask A(x) has shape {mask.shape} but x has shape {x.shape}: they '
        'must share the leading batch axis.')
  if noise.ndim != x.ndim + 1 or noise.shape[1:] != x.shape:
    raise ValueError(
        f'The noise has shape {noise.shape} but x has shape {x.shape}; noise '
        'must be (K, *x.shape): K samples for every example (see '
        'lanjax.noise).')
  if target is None:
    target = f(x)
  validation.output_leaves(target, what='the clean input x')
  target = jax.lax.stop_gradient(target)
  target_struct = jax.tree.structure(target)

  batch, example_shape = x.shape[0], x.shape[1:]

  def losses(eta):
    """``(c, B, *d)`` noise samples -> ``(c, B)`` output losses."""
    c = eta.shape[0]
    # One batch of B * c corrupted inputs, example-major: F batches the work
    # (no loop over samples), and a batch sharded over devices along B stays
    # sharded, each device evaluating its own examples' samples.
    eta = jnp.moveaxis(eta, 0, 1)  # (B, c, *d)
    z = corruption.corrupt(jnp.broadcast_to(x[:, None], eta.shape),
                           jnp.broadcast_to(mask, x.shape)[:, None], eta)
    out = f(z.reshape((batch * c,) + example_shape))
    validation.output_leaves(out, what='the corrupted inputs')
    if jax.tree.structure(out) != target_struct:
      raise ValueError(
          f'F returns {jax.tree.structure(out)} on the corrupted inputs but '
          f'{target_struct} on the clean input (or on the given target); F '
          'must return outputs of one structure.')
    per_leaf = []
    for o, t in zip(jax.tree.leaves(out), jax.tree.leaves(target)):
      out_shape = jnp.shape(o)
      if out_shape[:1] != (batch * c,):
        raise ValueError(
            f'F returns shape {out_shape} on a batch of {batch * c} corrupted '
            f'inputs ({c} noise samples of each of the {batch} examples); F '
            'must return one output per example of its batch.')
      if out_shape[1:] != jnp.shape(t)[1:]:
        raise ValueError(
            f'F returns shape {(batch,) + out_shape[1:]} on the corrupted input '
            f'but {jnp.shape(t)} on the clean input; F must map inputs of '
            'one shape to outputs of one shape.')
      o = o.reshape((batch, c) + out_shape[1:])
      per_leaf.append(jax.vmap(lambda o, t=t: output_loss(o, t),
                               in_axes=1)(o))
    return functools.reduce(jnp.add, per_leaf)

  num_samples = noise.shape[0]
  if chunk_size is not None and (
      not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1):
    raise ValueError(
        f'chunk_size must be a positive int (noise samples evaluated at '
        f'once) or None, got {chunk_size!r}.')
  if chunk_size is None or chunk_size >= num_samples:
    per_sample = losses(noise)  # (K, B)
  else:
    per_sample = _chunked(losses, noise, int(chunk_size), remat=remat)
  fidelity_loss = per_sample.mean(axis=0)
  mask_mean = mask.reshape(mask.shape[0], -1).mean(axis=-1)
  return fidelity_loss, mask_mean


def _chunked(losses, noise, chunk_size, *, remat=True):
  """``losses(noise)`` evaluated ``chunk_size`` noise samples at a time.

  A `lax.map` over chunks. With ``remat`` its body is rematerialised
  (`jax.checkpoint`): the backward pass keeps neither F's activations for all
  K samples nor a stacked copy of the noise, and recomputes F's forward pass
  chunk by chunk (bounded memory). Without, the activations are kept (the
  memory of the unchunked form) and only the working set is smaller, which
  keeps large K x B in a CPU's caches. Same values and gradients as the
  unchunked form either way (up to float summation order).
  """
  num_samples = noise.shape[0]
  num_full, rest = divmod(num_samples, chunk_size)
  wrap = (functools.partial(jax.checkpoint, prevent_cse=False) if remat
          else (lambda fn: fn))

  # The slice is taken inside the (rematerialised) body, so the backward pass
  # saves only the chunk index per iteration, not a stacked copy of the noise.
  @wrap
  def chunk(i):
    return losses(jax.lax.dynamic_slice_in_dim(noise, i * chunk_size,
                                               chunk_size))

  per_sample = jax.lax.map(chunk, jnp.arange(num_full))
  per_sample = per_sample.reshape((num_full * chunk_size, noise.shape[1]))
  if rest:
    tail = wrap(losses)(noise[num_full * chunk_size:])
    per_sample = jnp.concatenate([per_sample, tail], axis=0)
  return per_sample


def evaluation_bytes(f: Callable, x) -> int:
  """Estimated bytes to evaluate and differentiate ``f`` on the batch ``x``.

  The sum of the sizes of every value F's forward pass computes on ``x``
  (read from its jaxpr; no compilation, nothing runs), doubled for the
  backward pass's cotangents, plus three batches of ``x`` (noise, corrupted
  input, its cotangent): what one noise sample costs in `lan_terms`.

  Args:
    f: the black box.
    x: an array or `jax.ShapeDtypeStruct`, ``(B, *d)``.

  Returns:
    Bytes, an int.
  """
  spec = jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x))
  closed = jax.make_jaxpr(f)(spec)

  def size(jaxpr):
    total = 0
    for eqn in jaxpr.eqns:
      inner = list(jax.extend.core.jaxprs_in_params(eqn.params))
      if inner:
        total += sum(size(j) for j in inner)
        continue
      for v in eqn.outvars:
        aval = v.aval
        if hasattr(aval, 'dtype') and hasattr(aval, 'size'):
          total += int(aval.size) * np.dtype(aval.dtype).itemsize
    return total

  x_bytes = int(np.prod(spec.shape)) * np.dtype(spec.dtype).itemsize
  return 2 * size(closed.jaxpr) + 3 * x_bytes


def chunk_size_for_memory(f: Callable, x, *, num_samples: int,
                          max_bytes: int) -> Optional[int]:
  """The ``chunk_size`` that keeps `lan_terms`' evaluations of F in a budget.

  Args:
    f: the black box.
    x: the batch (array or `jax.ShapeDtypeStruct`), ``(B, *d)``.
    num_samples: ``K``.
    max_bytes: memory allowed for F's evaluations on the corrupted copies at
      once (forward and backward). It does not cover the ``(K, B, *d)`` noise
      array itself, which `lan_terms` receives whole.

  Returns:
    None when all ``K`` samples fit (no chunking), else the largest chunk
    size in ``[1, K)`` whose estimated memory (`evaluation_bytes` per sample)
    fits; 1 when even one sample does not.
  """
  if max_bytes <= 0:
    raise ValueError(f'max_bytes must be > 0, got {max_bytes}.')
  per_sample = max(evaluation_bytes(f, x), 1)
  chunk = int(max_bytes // per_sample)
  if chunk >= num_samples:
    return None
  return max(chunk, 1)


def lan_loss(
    f: Callable,
    x,
    mask,
    noise,
    *,
    beta: float,
    output_loss: Callable = losses_lib.softmax_cross_entropy,
    target=None,
    reduction: str = 'mean',
    chunk_size: Optional[int] = None,
    remat: bool = True,
):
  r"""The LAN objective (eq. 3), estimated with ``K`` noise samples.

  .. math::
    \mathcal{L}_{LAN}(x) = \frac{1}{K} \sum_{k=1}^{K}
        L_F(F(\tilde{x}_k), F(x)) - \beta \, \overline{A(x)}

  Minimising it trains A to corrupt as much of the input as possible while
  keeping F's output. F is any callable (an NNX or Linen model's apply, an
  Equinox module, a bare function); its output on the clean input is a
  constant target: no gradient flows into it.

  F may return a pytree of arrays (e.g. a Flax model's dict of logits), each
  leaf ``(B, *l)``: ``output_loss`` is then applied to each leaf and the
  per-example losses are summed over leaves. To use one leaf only, or weigh
  them, pass ``lambda x: model(x)['logits']`` as F or a weighting F.

  Arguments are checked before tracing: arrays (not lists or dicts), a
  non-empty batch, ``beta`` a finite number >= 0, callables for ``f`` and
  ``output_loss``, F's output arrays. A concrete mask outside ``[0, 1]`` is
  rejected (eq. 2 would extrapolate and the objective be unbounded below);
  a traced mask (under jit/grad) is not, see `lanjax.validation` for a
  checked mode with `jax.experimental.checkify`.

  Args:
    f: the black box, mapping a batch ``(B, *d)`` to outputs ``(B, *l)`` (or
      a pytree of such arrays).
    x: clean inputs, ``(B, *d)``, ``B >= 1``.
    mask: the attention mask ``A(x)`` in ``[0, 1]``, ``(B, *m)`` broadcastable
      to ``x`` (e.g. one channel tiled over the input's channels).
    noise: ``K`` noise samples per example, ``(K, B, *d)``; see `lanjax.noise`.
    beta: weight of the mean mask (the corruption reward), ``beta >= 0``
      (0: the fidelity term alone).
    output_loss: per-example ``L_F(output, target) -> (B,)``; defaults to
      cross-entropy between logits (`lanjax.losses`).
    target: optional precomputed ``F(x)``.
    reduction: ``'mean'`` or ``'sum'`` over the batch, or ``'none'`` for the
      per-example ``(B,)`` values.
    chunk_size: if set, evaluate at most this many noise samples at a time
      (a ``lax.map`` over chunks, F seeing ``B * chunk_size`` inputs); same
      result as without. See `chunk_size_for_memory`.
    remat: with ``chunk_size``, recompute F's forward pass per chunk in the
      backward pass, so memory is bounded by one chunk (default). False keeps
      the activations (the unchunked memory) and only tiles the work, which
      is faster on CPUs when ``K * B`` inputs exceed the caches.

  Returns:
    The objective: a scalar, or ``(B,)`` with ``reduction='none'``.

  Raises:
    TypeError: an argument of the wrong kind (a list for an array, a string
      or array for ``beta``, F returning no arrays).
    ValueError: an empty batch, ``beta < 0``, a concrete mask outside
      ``[0, 1]``, or shapes that do not fit (each message names the argument
      and the fix).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import lanjax
    >>> f = lambda x: x @ jnp.ones((4, 3))           # any JAX callable
    >>> x = jnp.ones((2, 4))
    >>> mask = jnp.full((2, 4), 0.5)
    >>> noise = lanjax.ConstantNoise(0.).sample(jax.random.key(0), x, 8)
    >>> lanjax.lan_loss(f, x, mask, noise, beta=1.).shape
    ()
  """
  from lanjax import validation  # pylint: disable=g-import-not-at-top
  validation.check_scalar(beta, name='beta', nonnegative=True)
  if reduction not in ('mean', 'sum', 'none'):
    raise ValueError(
        f"Unknown reduction {reduction!r}; expected 'mean', 'sum' or 'none'.")
  fidelity_loss, mask_mean = lan_terms(
      f, x, mask, noise, output_loss=output_loss, target=target,
      chunk_size=chunk_size, remat=remat)
  per_example = fidelity_loss - beta * mask_mean
  if reduction == 'mean':
    return per_example.mean()
  if reduction == 'sum':
    return per_example.sum()
  return per_example
