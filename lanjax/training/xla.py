"""XLA options lanjax compiles its steps with, per platform."""

from __future__ import annotations

import functools
import logging
import os
from typing import Callable, Optional

import jax
import jax.extend  # pylint: disable=unused-import
import jax.numpy as jnp


# XLA:CPU in jaxlib 0.10 hands reductions to YNNPACK fusions by default. Those
# run a sum over a leading axis, the one every LAN step has (the gradient of
# the mask A(x) summed over the K noise samples, and the bias gradients of a
# convolutional F), about 100x slower than XLA's own loops: 25 ms instead of
# 0.2 ms for an (8, 128, 28, 28) sum on 2 cores. Keeping YNNPACK for dots and
# convolutions only (its other defaults) removes that; see benchmarks/.
_YNN_OPTION = 'xla_cpu_experimental_ynn_fusion_type'
_CPU_COMPILER_OPTIONS = {
    _YNN_OPTION: 'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,'
                 'LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION'}


@functools.lru_cache(maxsize=None)
def compiler_options(platform: Optional[str] = None) -> Optional[dict]:
  """XLA options lanjax compiles its steps with on ``platform`` (or None).

  On CPU: YNNPACK fusions for dots and convolutions only, not reductions
  (see above). None elsewhere, when ``XLA_FLAGS`` already sets the YNNPACK
  fusion types (the user's choice wins), when ``LANJAX_XLA_DEFAULTS=1``, or
  when this jaxlib does not know the option.
  """
  platform = platform or jax.default_backend()
  if (platform != 'cpu' or os.environ.get('LANJAX_XLA_DEFAULTS') == '1'
      or _YNN_OPTION in os.environ.get('XLA_FLAGS', '')):
    return None
  try:
    jax.jit(lambda a: a.sum(0)).lower(
        jax.ShapeDtypeStruct((2, 2), jnp.float32)).compile(
            compiler_options=_CPU_COMPILER_OPTIONS)
  except Exception:  # pylint: disable=broad-except
    logging.info('XLA does not accept %s; using its defaults.',
                 _CPU_COMPILER_OPTIONS)
    return None
  return dict(_CPU_COMPILER_OPTIONS)


def platform_of(mesh=None) -> str:
  return (mesh.devices.flat[0].platform if mesh is not None
          else jax.default_backend())


def jit(fun: Callable, *, mesh=None, **kwargs):
  """`jax.jit` with lanjax's `compiler_options` for the mesh's platform."""
  return jax.jit(fun, compiler_options=compiler_options(platform_of(mesh)),
                 **kwargs)


def jit_hoisting_constants(fun: Callable, *example_args) -> Callable:
  """`jax.jit` of ``fun`` with the arrays it closes over passed as arguments.

  A jitted function that closes over arrays (a test set) compiles them into
  the program as constants, and XLA:CPU then constant-folds the operations
  on them at every compile (the "Constant folding an instruction is taking
  > 1s" messages, about a second per compile for F's first layer on 10,000
  test images). This traces ``fun`` once on ``example_args`` and returns a
  function of the same arguments that runs the traced program with its
  closed-over arrays as runtime arguments of one compiled program
  (``.lower(*args)`` lowers it). ``fun``'s arguments must keep the example's
  shapes and dtypes; its output may be any pytree.
  """
  closed, out_shape = jax.make_jaxpr(fun, return_shape=True)(*example_args)
  out_tree = jax.tree.structure(out_shape)
  run = jax.jit(lambda consts, *args: jax.extend.core.jaxpr_as_fun(
      jax.extend.core.ClosedJaxpr(closed.jaxpr, consts))(
          *jax.tree.leaves(args)))
  consts = [jnp.asarray(c) for c in closed.consts]  # on the device once

  def call(*args):
    return jax.tree.unflatten(out_tree, run(consts, *args))
  call.lower = lambda *args: run.lower(consts, *args)
  return call
