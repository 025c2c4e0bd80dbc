"""Device meshes: the batch sharded on a ``data`` axis, the rest replicated."""

from __future__ import annotations

from typing import Optional

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P


def shard_batch(x, mesh: Optional[jax.sharding.Mesh], *, axis: int = 0):
  """Constrains axis ``axis`` (the batch) of ``x`` to the mesh's ``data`` axis.

  Inside a jitted step this tells XLA to split the batch over the devices
  (each device computes its slice); a no-op without a mesh of several devices.
  """
  if mesh is None or mesh.size == 1:
    return x
  spec = P(*([None] * axis + ['data']))
  return jax.tree.map(
      lambda a: jax.lax.with_sharding_constraint(a, NamedSharding(mesh, spec)),
      x)



def make_mesh(num_devices: Optional[int] = None) -> jax.sharding.Mesh:
  """A 1-D mesh with a ``data`` axis over the first ``num_devices`` devices.

  All devices of all hosts by default (after `jax.distributed.initialize` on
  a multi-host system): one CPU, one GPU, or every core of a TPU pod slice.
  """
  devices = jax.devices()
  n = len(devices) if not num_devices else num_devices
  if n > len(devices):
    raise ValueError(f'Asked for {n} devices but only {len(devices)} exist.')
  return jax.sharding.Mesh(np.asarray(devices[:n]), ('data',))


def replicate(tree, mesh: jax.sharding.Mesh):
  """Places every array of ``tree`` on all devices of ``mesh`` (replicated).

  On several hosts every process must pass the same values (datasets and
  parameters are built deterministically from the config and seed); each
  host then fills its own devices.
  """
  sharding = NamedSharding(mesh, P())
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)

  def put(a):
    if not hasattr(a, 'shape'):
      return a
    host = np.asarray(a)
    return jax.make_array_from_callback(host.shape, sharding,
                                        lambda index: host[index])
  return jax.tree.map(put, tree)


def check_divisible(batch_size: int, mesh, what: str = 'batch size'):
  if mesh is not None and batch_size % mesh.size:
    raise ValueError(
        f'The {what} {batch_size} does not divide over the {mesh.size} '
        f'devices of the mesh; use a multiple of {mesh.size}.')

