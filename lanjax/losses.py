"""Output-space losses L_F(F(x~), F(x)), per example.

Each takes the black box's output on the corrupted input and its output on the
clean input (the target, treated as a constant) and returns one value per
example: shape ``(B,)`` for outputs of shape ``(B, ...)``. Users can pass any
callable of the same signature to `lanjax.lan_loss`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def softmax_cross_entropy(logits, target_logits):
  r"""Cross-entropy of ``softmax(logits)`` against ``softmax(target_logits)``.

  .. math::
    L_F(F(\tilde{x}), F(x)) = -\sum_i \mathrm{softmax}(F(x))_i
        \log \mathrm{softmax}(F(\tilde{x}))_i

  Computed with ``log_softmax`` on logits, so it is finite for any finite
  logits (no ``log(0)``). The paper's classifiers end in a softmax; here F
  returns the logits before it.

  Args:
    logits: F's logits on the corrupted input, ``(B, ..., C)``.
    target_logits: F's logits on the clean input, ``(B, ..., C)``.

  Returns:
    Per-example cross-entropy, ``(B,)`` (summed over classes, averaged over any
    axes between batch and classes).

  Example:
    >>> import jax.numpy as jnp
    >>> softmax_cross_entropy(jnp.zeros((1, 2)), jnp.zeros((1, 2)))  # log 2
    Array([0.6931472], dtype=float32)
  """
  target = jax.nn.softmax(jax.lax.stop_gradient(target_logits), axis=-1)
  ce = -jnp.sum(target * jax.nn.log_softmax(logits, axis=-1), axis=-1)
  return _mean_over_nonbatch(ce)


def squared_error(output, target):
  r"""Mean squared error per example, for reconstructions (e.g. autoencoders).

  .. math::
    L_F(F(\tilde{x}), F(x)) = \frac{1}{\ell} \lVert F(\tilde{x}) - F(x) \rVert^2

  Args:
    output: F's output on the corrupted input, ``(B, ...)``.
    target: F's output on the clean input, ``(B, ...)``.

  Returns:
    Per-example mean squared error, ``(B,)``.
  """
  target = jax.lax.stop_gradient(target)
  return _mean_over_nonbatch(jnp.square(output - target))


def _mean_over_nonbatch(v):
  return v.reshape(v.shape[0], -1).mean(axis=-1) if v.ndim > 1 else v


OUTPUT_LOSSES = {
    'softmax_cross_entropy': softmax_cross_entropy,
    'squared_error': squared_error,
}


def get_output_loss(name: str):
  """Returns the output-space loss called ``name`` (see `OUTPUT_LOSSES`)."""
  try:
    return OUTPUT_LOSSES[name]
  except KeyError:
    raise ValueError(
        f'Unknown output loss {name!r}; expected one of: '
        f'{", ".join(OUTPUT_LOSSES)}.') from None
