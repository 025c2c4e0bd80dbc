"""Noise distributions H for LAN training (section 3.2 of Grimm et al.).

A noise distribution is a small pytree with a ``sample(key, x, num_samples)``
method that returns ``num_samples`` noise tensors for every example of the
batch ``x``, stacked on a new leading axis: shape ``(K, *x.shape)``.

Because they are pytrees, noise distributions are passed to jitted functions as
arguments, so a large bootstrap pool is a device buffer, not a constant baked
into the compiled program.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ConstantNoise:
  r"""Constant noise :math:`\eta_{const} = c \mathbf{1}`.

  Use it where inputs have a natural default value: 0 word counts in a bag of
  words, 0 pixels in a binary image.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> ConstantNoise(0.).sample(jax.random.key(0), jnp.ones((2, 3)), 4).shape
    (4, 2, 3)
  """

  value: Any = 0.0

  def sample(self, key, x, num_samples: int):
    """Returns ``num_samples`` copies of ``c * ones_like(x)``: ``(K, *x.shape)``."""
    del key
    _check_sample_args(x, num_samples)
    if not isinstance(self.value, (int, float, np.number)) and not hasattr(
        self.value, 'dtype'):
      raise TypeError(
          f'ConstantNoise.value must be a number or an array broadcastable to '
          f'an example, got {self.value!r:.80} ({type(self.value).__name__}).')
    c = jnp.asarray(self.value, dtype=jnp.result_type(x))
    return jnp.broadcast_to(c, (num_samples,) + jnp.shape(x))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class BootstrapNoise:
  r"""Bootstrapped noise :math:`\eta_{boot}`: training inputs drawn uniformly.

  Every noise tensor is an example drawn uniformly, with replacement, from
  ``pool``; each of the ``K`` samples of each example gets its own draw.

  Args:
    pool: array ``(N, *d)`` of training inputs.
    transform: optional static callable ``transform(key, draws) -> noise``
      applied to the ``(K, B, *d')`` draws, for pools that hold raw examples
      which an input pipeline turns into inputs (e.g. MNIST digits placed at
      random positions in the translated-MNIST domain).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> pool = jnp.arange(10.).reshape(5, 2)
    >>> BootstrapNoise(pool).sample(jax.random.key(0), jnp.ones((3, 2)), 8).shape
    (8, 3, 2)
  """

  pool: Any
  transform: Optional[Callable[..., Any]] = dataclasses.field(
      default=None, metadata=dict(static=True))

  def __post_init__(self):
    # Only array-like pools are checked: pytree utilities rebuild the
    # dataclass with placeholders (None, sentinels) as leaves.
    if not hasattr(self.pool, 'shape') and not isinstance(
        self.pool, (list, tuple)):
      return
    shape = np.shape(self.pool)
    if len(shape) < 1 or shape[0] == 0:
      raise ValueError(
          f'The bootstrap noise pool is empty (shape {shape}); it must hold at '
          'least one training example along its first axis.')

  def sample(self, key, x, num_samples: int):
    """Returns ``(K, *x.shape)`` draws from the pool (after ``transform``)."""
    _check_sample_args(x, num_samples, batch=True)
    pool = self.pool
    x_shape = jnp.shape(x)
    draw_key, transform_key = jax.random.split(key)
    idx = jax.random.randint(
        draw_key, (num_samples, x_shape[0]), 0, pool.shape[0])
    eta = jnp.take(pool, idx, axis=0)
    if self.transform is not None:
      eta = self.transform(transform_key, eta)
    if eta.shape[2:] != x_shape[1:]:
      what = 'after its transform ' if self.transform is not None else ''
      raise ValueError(
          f'Bootstrap noise examples {what}have shape {eta.shape[2:]} but the '
          f'input examples have shape {x_shape[1:]}; the pool must hold '
          'examples of the input\'s shape.')
    return eta.astype(jnp.result_type(x))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class GaussianNoise:
  r"""Gaussian noise :math:`\eta = \mu + \sigma \epsilon`, :math:`\epsilon
  \sim N(0, I)`.

  Use it where the distribution of uninformative inputs is known, e.g. the
  background distribution :math:`D_0` of a synthetic selective-dependence
  task (`lanjax.data.sdc`). ``mean`` and ``std`` broadcast to one example
  (scalars, or arrays of the example's trailing shape).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> GaussianNoise(jnp.zeros(2), 1.).sample(jax.random.key(0),
    ...                                        jnp.ones((3, 9, 2)), 4).shape
    (4, 3, 9, 2)
  """

  mean: Any = 0.0
  std: Any = 1.0

  def sample(self, key, x, num_samples: int):
    """Returns ``(K, *x.shape)`` independent Gaussian draws."""
    _check_sample_args(x, num_samples)
    dtype = jnp.result_type(x)
    shape = (num_samples,) + jnp.shape(x)
    eps = jax.random.normal(key, shape, dtype)
    return (jnp.asarray(self.mean, dtype)
            + jnp.asarray(self.std, dtype) * eps).astype(dtype)


def _check_sample_args(x, num_samples, *, batch=False):
  from lanjax import validation  # pylint: disable=g-import-not-at-top
  validation.check_array(x, name='x (the batch to draw noise for)',
                         min_ndim=1 if batch else 0, batch=batch)
  _check_num_samples(num_samples)


def _check_num_samples(num_samples):
  if (isinstance(num_samples, bool)
      or not isinstance(num_samples, (int, np.integer)) or num_samples < 1):
    raise ValueError(
        f'The number of noise samples K must be a positive int, got '
        f'{num_samples!r}.')


def make_noise(kind: str, *, value: float = 0.0, pool=None, transform=None):
  """Builds a noise distribution from its configuration.

  Args:
    kind: ``'constant'`` or ``'bootstrap'``.
    value: the constant ``c`` for constant noise.
    pool: the training inputs for bootstrap noise, ``(N, *d)``.
    transform: optional transform of bootstrap draws (see `BootstrapNoise`).

  Returns:
    A `ConstantNoise` or `BootstrapNoise`.
  """
  if kind == 'constant':
    return ConstantNoise(value)
  if kind == 'bootstrap':
    if pool is None:
      raise ValueError('Bootstrap noise needs a pool of training inputs.')
    return BootstrapNoise(pool, transform)
  raise ValueError(
      f'Unknown noise kind {kind!r}; expected one of: constant, bootstrap.')
