"""The LAN objective, eq. (3) of Grimm et al."""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

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
):
  r"""The two terms of the LAN objective, per example.

  Returns ``(fidelity, coverage)``, each ``(B,)``:

  .. math::
    \mathrm{fidelity}(x) = \frac{1}{K} \sum_{k=1}^K
        L_F(F(\tilde{x}_k), F(x)), \qquad
    \mathrm{coverage}(x) = \overline{A(x)}

  with :math:`\tilde{x}_k = A(x) \eta_k + (1 - A(x)) x` (eq. 2). The ``K``
  noise samples are vmapped: F sees them as one batch. See `lan_loss`.
  """
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
  target = jax.lax.stop_gradient(target)

  def loss_for_sample(eta):
    out = f(corruption.corrupt(x, mask, eta))
    if jnp.shape(out) != jnp.shape(target):
      raise ValueError(
          f'F returns shape {jnp.shape(out)} on the corrupted input but '
          f'{jnp.shape(target)} on the clean input; F must map inputs of one '
          'shape to outputs of one shape.')
    return output_loss(out, target)

  if chunk_size is None or chunk_size >= noise.shape[0]:
    per_sample = jax.vmap(loss_for_sample)(noise)  # (K, B)
  else:
    # Bounded memory: at most `chunk_size` corrupted copies of the batch live
    # at once; the result equals the fully vmapped one.
    per_sample = jax.lax.map(loss_for_sample, noise, batch_size=chunk_size)
  fidelity = per_sample.mean(axis=0)
  coverage = mask.reshape(mask.shape[0], -1).mean(axis=-1)
  return fidelity, coverage


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
):
  r"""The LAN objective (eq. 3), estimated with ``K`` noise samples.

  .. math::
    \mathcal{L}_{LAN}(x) = \frac{1}{K} \sum_{k=1}^{K}
        L_F(F(\tilde{x}_k), F(x)) - \beta \, \overline{A(x)}

  Minimising it trains A to corrupt as much of the input as possible while
  keeping F's output. F is any callable (an NNX or Linen model's apply, an
  Equinox module, a bare function); its output on the clean input is a
  constant target: no gradient flows into it.

  Args:
    f: the black box, mapping a batch ``(B, *d)`` to outputs ``(B, *l)``.
    x: clean inputs, ``(B, *d)``.
    mask: the attention mask ``A(x)`` in ``[0, 1]``, ``(B, *m)`` broadcastable
      to ``x`` (e.g. one channel tiled over the input's channels).
    noise: ``K`` noise samples per example, ``(K, B, *d)``; see `lanjax.noise`.
    beta: weight of the mean mask (the corruption reward), ``beta > 0``.
    output_loss: per-example ``L_F(output, target) -> (B,)``; defaults to
      cross-entropy between logits (`lanjax.losses`).
    target: optional precomputed ``F(x)``.
    reduction: ``'mean'`` or ``'sum'`` over the batch, or ``'none'`` for the
      per-example ``(B,)`` values.
    chunk_size: if set, evaluate at most this many noise samples at a time
      (``lax.map``) to bound memory; same result as without.

  Returns:
    The objective: a scalar, or ``(B,)`` with ``reduction='none'``.

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
  if reduction not in ('mean', 'sum', 'none'):
    raise ValueError(
        f"Unknown reduction {reduction!r}; expected 'mean', 'sum' or 'none'.")
  fidelity, coverage = lan_terms(
      f, x, mask, noise, output_loss=output_loss, target=target,
      chunk_size=chunk_size)
  per_example = fidelity - beta * coverage
  if reduction == 'mean':
    return per_example.mean()
  if reduction == 'sum':
    return per_example.sum()
  return per_example
