"""The Deep Averaging Network F of the 20 Newsgroups experiment (appendix C)."""

from __future__ import annotations

from typing import Optional, Sequence

import jax
import jax.numpy as jnp
from flax import nnx


class DeepAveragingNetwork(nnx.Module):
  r"""A bag-of-words classifier: averaged word embeddings, then an MLP.

  Appendix C of Grimm et al. (after Iyyer et al., 2015): the count vector
  ``x`` is multiplied by an embedding matrix and divided by the number of
  words in the document,

  .. math:: h_0 = \frac{x^\top E}{\sum_i x_i},

  then passed through hidden layers (ReLU, dropout in training) and a final
  layer of class logits (the softmax lives in the losses). In training, DAN's
  word dropout (Iyyer et al.) can also drop each distinct word of a document
  before the average.

  Because of the averaging, F depends only on the *proportions* of the
  counts: ``F(c x) = F(x)`` for any ``c > 0``. A document without words
  (``sum(x) = 0``) averages to the zero vector.

  Args:
    vocab_size: ``V``, the length of the count vectors.
    num_classes: number of classes (20).
    embed_dim: embedding size (50).
    hidden: hidden layer widths ((200, 150)).
    dropout_rate: dropout after each hidden layer, applied only when a
      ``dropout_key`` is given.
    word_dropout_rate: probability of dropping each word (all its counts)
      before averaging, applied only when a ``dropout_key`` is given.
    rngs: NNX random streams for initialisation.

  Example:
    >>> from flax import nnx
    >>> import jax.numpy as jnp
    >>> f = DeepAveragingNetwork(100, rngs=nnx.Rngs(0))
    >>> f(jnp.ones((2, 100))).shape
    (2, 20)
  """

  def __init__(self, vocab_size: int, *, num_classes: int = 20,
               embed_dim: int = 50, hidden: Sequence[int] = (200, 150),
               dropout_rate: float = 0.5, word_dropout_rate: float = 0.0,
               rngs: nnx.Rngs):
    for name, rate in (('dropout_rate', dropout_rate),
                       ('word_dropout_rate', word_dropout_rate)):
      if not 0.0 <= rate < 1.0:
        raise ValueError(f'{name} must be in [0, 1), got {rate}.')
    self.vocab_size = int(vocab_size)
    self.dropout_rate = float(dropout_rate)
    self.word_dropout_rate = float(word_dropout_rate)
    self.embedding = nnx.Param(jax.random.normal(
        rngs.params(), (vocab_size, embed_dim)) / jnp.sqrt(embed_dim))
    widths = [embed_dim, *hidden]
    self.hidden = nnx.List([nnx.Linear(i, o, rngs=rngs)
                            for i, o in zip(widths[:-1], widths[1:])])
    self.head = nnx.Linear(widths[-1], num_classes, rngs=rngs)

  def average(self, x):
    """The averaged embedding ``x E / sum(x)``: ``(B, V) -> (B, embed_dim)``.

    ``x`` is a dense count vector ``(B, V)`` or a sparse window
    ``{'ids': (B, L) int, 'counts': (B, L)}`` of each document's distinct
    words (`window_average`).
    """
    if isinstance(x, dict):
      return self.window_average(x['ids'], x['counts'])
    if x.ndim != 2 or x.shape[-1] != self.vocab_size:
      raise ValueError(
          f'The DAN was built for count vectors of length {self.vocab_size} '
          f'but got a batch of shape {tuple(x.shape)}; expected (B, '
          f'{self.vocab_size}).')
    total = x.sum(-1, keepdims=True)
    return (x @ self.embedding[...]) / jnp.where(total > 0, total, 1.0)

  def window_average(self, ids, counts):
    r"""The average from a sparse window of word ids and their counts.

    .. math:: h_0 = \frac{\sum_l c_l E_{i_l}}{\sum_l c_l}

    the same math as the dense ``x E / sum(x)`` (a document's padding entries
    have count 0), summed over the ``L`` window entries in a fixed order: its
    result does not depend on how a matrix product over the whole vocabulary
    is split over threads, and it costs ``L`` instead of ``V`` rows of E.

    Args:
      ids: ``(B, L)`` int word ids in ``[0, V)``.
      counts: ``(B, L)`` their counts (0 for padding).

    Returns:
      ``(B, embed_dim)``.
    """
    ids, counts = jnp.asarray(ids), jnp.asarray(counts)
    if ids.ndim != 2 or ids.shape != counts.shape:
      raise ValueError(
          f'A sparse window needs ids and counts of the same shape (B, L); '
          f'got ids {tuple(ids.shape)} and counts {tuple(counts.shape)}.')
    if not jnp.issubdtype(ids.dtype, jnp.integer):
      raise ValueError(f'Window ids must be integers, got {ids.dtype}.')
    rows = self.embedding[...][ids]  # (B, L, D)
    total = counts.sum(-1, keepdims=True)
    summed = (counts[..., None] * rows).sum(-2)
    return summed / jnp.where(total > 0, total, 1.0)

  def __call__(self, x, *, dropout_key: Optional[jax.Array] = None):
    """Logits ``(B, num_classes)`` for count vectors ``x`` of shape ``(B, V)``.

    Args:
      x: word counts (non-negative; any scale), dense ``(B, V)`` or a sparse
        window ``{'ids', 'counts'}`` of shape ``(B, L)`` each (`average`).
      dropout_key: a PRNG key turns dropout on (training); None is evaluation.
    """
    if dropout_key is not None and self.word_dropout_rate > 0:
      dropout_key, word_key = jax.random.split(dropout_key)
      if isinstance(x, dict):
        keep = jax.random.bernoulli(word_key, 1.0 - self.word_dropout_rate,
                                    x['counts'].shape)
        x = {**x, 'counts': jnp.where(keep, x['counts'], 0.0)}
      else:
        keep = jax.random.bernoulli(word_key, 1.0 - self.word_dropout_rate,
                                    x.shape)
        x = jnp.where(keep, x, 0.0)
    h = self.average(x)
    keys = (jax.random.split(dropout_key, len(self.hidden))
            if dropout_key is not None else [None] * len(self.hidden))
    for layer, key in zip(self.hidden, keys):
      h = jax.nn.relu(layer(h))
      if key is not None and self.dropout_rate > 0:
        keep = jax.random.bernoulli(key, 1.0 - self.dropout_rate, h.shape)
        h = jnp.where(keep, h / (1.0 - self.dropout_rate), 0.0)
    return self.head(h)
