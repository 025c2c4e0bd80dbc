"""The convolutional LAN A: shape, range, input checks, and that it learns.

`lanjax.models.ConvLatentAttentionNetwork` has the FC A's interface; the
learning test gives it a black box that reads a different place in every
input (marked by the input itself), which no input-independent mask can keep.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from lanjax import noise as noise_lib
from lanjax import training
from lanjax.experiments import skeleton
from lanjax.models import ConvLatentAttentionNetwork, LatentAttentionNetwork

from conftest import load_config


def test_conv_lan_shapes_range_and_batch_independence():
  a = ConvLatentAttentionNetwork((12, 20, 3), (4, 8), kernel_size=3,
                                 mask_shape=(12, 20, 1), rngs=nnx.Rngs(0))
  x = 50.0 * jax.random.normal(jax.random.key(1), (5, 12, 20, 3))
  m = a(x)
  assert m.shape == (5, 12, 20, 1)
  assert a.logits(x).shape == (5, 12, 20, 1)
  # A sigmoid of the logits: in [0, 1] even for large inputs.
  np.testing.assert_allclose(m, jax.nn.sigmoid(a.logits(x)), rtol=1e-6)
  assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0
  # One example's mask does not depend on the rest of the batch, and it
  # depends on the example (not one mask for all).
  np.testing.assert_allclose(a(x[2:3])[0], m[2], atol=1e-5)
  assert float(jnp.abs(m[0] - m[1]).max()) > 1e-3
  # mask_shape defaults to input_shape.
  b = ConvLatentAttentionNetwork((8, 8, 2), (4,), rngs=nnx.Rngs(0))
  assert b(jnp.ones((1, 8, 8, 2))).shape == (1, 8, 8, 2)


def test_conv_lan_refuses_other_inputs_with_a_clear_message():
  a = ConvLatentAttentionNetwork((8, 8, 1), (4,), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r'built for inputs of shape \(8, 8, '
                     r'1\).*\(2, 8, 9, 1\)'):
    a(jnp.ones((2, 8, 9, 1)))
  with pytest.raises(ValueError, match='needs images.*LatentAttentionNetwork'):
    ConvLatentAttentionNetwork((9, 2), (4,), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='at least one conv'):
    ConvLatentAttentionNetwork((8, 8, 1), (), rngs=nnx.Rngs(0))


def test_config_lan_arch_picks_the_network():
  config = load_config('sdc', 'quick')
  assert isinstance(skeleton.make_lan(config.lan, (84, 84, 1), seed=0),
                    {'mlp': LatentAttentionNetwork,
                     'conv': ConvLatentAttentionNetwork}[config.lan.arch])
  for arch, cls in (('mlp', LatentAttentionNetwork),
                    ('conv', ConvLatentAttentionNetwork)):
    config.lan.arch = arch
    a = skeleton.make_lan(config.lan, (84, 84, 1), mask_shape=(84, 84, 1),
                          seed=0)
    assert type(a) is cls and a.mask_shape == (84, 84, 1)
  config.lan.arch = 'transformer'
  with pytest.raises(ValueError, match="'mlp' or 'conv'"):
    skeleton.make_lan(config.lan, (84, 84, 1))


S = 16  # image side; F reads the 4x4 square marked in channel 0


def _marked_images(key, n):
  """``(n, S, S, 2)``: channel 0 marks a random 4x4 square, channel 1 values."""
  k1, k2 = jax.random.split(key)
  corner = jax.random.randint(k1, (n, 2), 0, S // 4) * 4
  r = jnp.arange(S)
  rows = (r >= corner[:, :1]) & (r < corner[:, :1] + 4)
  cols = (r >= corner[:, 1:]) & (r < corner[:, 1:] + 4)
  marker = (rows[:, :, None] & cols[:, None, :]).astype(jnp.float32)
  values = jax.random.uniform(k2, (n, S, S), minval=-1.0, maxval=1.0)
  return jnp.stack([marker, values], -1)


def _f_apply(p, x):
  """Logits from the values inside the marked square only."""
  s = (x[..., 0] * x[..., 1]).sum((1, 2)) / 4.0
  return s[:, None] * p


def test_conv_lan_learns_to_keep_the_place_f_reads_in_each_input():
  a = ConvLatentAttentionNetwork((S, S, 2), (8, 8), kernel_size=3,
                                 mask_shape=(S, S, 1), rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(a, nnx.Param)
  tx = optax.adam(2e-2)
  pool = _marked_images(jax.random.key(0), 256)
  update = jax.jit(training.lan_update(
      graphdef, tx, _f_apply,
      lambda d, k: d['pool'][jax.random.randint(k, (32,), 0, 256)],
      beta=0.5, num_samples=1))
  data = {'pool': pool, 'f_params': jnp.array([3.0, -3.0]),
          'noise': noise_lib.ConstantNoise(0.0)}
  state = training.init_state(params, tx)
  for step in range(40):
    state, _ = update(state, data, jax.random.fold_in(jax.random.key(1), step))
  x = _marked_images(jax.random.key(2), 64)  # unseen placements
  m = nnx.merge(graphdef, state['params'])(x)[..., 0]
  inside = (m * x[..., 0]).sum((1, 2)) / x[..., 0].sum((1, 2))
  outside = (m * (1 - x[..., 0])).sum((1, 2)) / (1 - x[..., 0]).sum((1, 2))
  # Kept (low mask) where F reads, corrupted elsewhere, in every input.
  assert float(inside.max()) < 0.35, inside
  assert float(outside.min()) > 0.65, outside
