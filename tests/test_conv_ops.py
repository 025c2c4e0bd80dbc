"""`lanjax.models.conv_ops`: the layers' own outputs and gradients, computed
only through stride-1, undilated convolutions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lanjax.models import ConvAutoencoder
from lanjax.models import ConvClassifier
from lanjax.models import conv_ops

# (kernel, stride, padding, height): strided and not, kernels that are and
# are not multiples of the stride, odd and even sizes.
CASES = [(4, 2, 'SAME', 14), (5, 2, 'SAME', 16), (3, 2, 'SAME', 9),
         (5, 2, 'VALID', 13), (3, 1, 'SAME', 8), (5, 3, 'VALID', 12)]


def _check(layer, op, x):
  """``op(layer, x)`` equals ``layer(x)``, with the gradients of both with
  respect to x and the layer's parameters (each side one jitted call)."""
  graphdef, params = nnx.split(layer)

  def value_and_grads(apply):
    def f(p, x):
      out = apply(nnx.merge(graphdef, p), x)
      return out, jax.grad(lambda p, x: (apply(nnx.merge(graphdef, p), x) ** 2
                                         ).sum(), argnums=(0, 1))(p, x)
    return jax.jit(f)(params, x)

  got, (gp, gx) = value_and_grads(op)
  want, (wp, wx) = value_and_grads(lambda m, x: m(x))
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(gx, wx, rtol=1e-4, atol=1e-4)
  for g, w in zip(jax.tree.leaves(gp), jax.tree.leaves(wp)):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize('kernel,stride,padding,size', CASES)
def test_conv_equals_the_layer_with_its_gradients(kernel, stride, padding,
                                                  size):
  layer = nnx.Conv(3, 5, (kernel, kernel), strides=stride, padding=padding,
                   rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (2, size, size + 3, 3))
  _check(layer, conv_ops.conv, x)


@pytest.mark.parametrize('kernel,stride,padding,size,transpose_kernel',
                         [c + (False,) for c in CASES]
                         + [(5, 2, 'SAME', 16, True), (4, 3, 'VALID', 9, True)])
def test_conv_transpose_equals_the_layer_with_its_gradients(
    kernel, stride, padding, size, transpose_kernel):
  layer = nnx.ConvTranspose(3, 4, (kernel, kernel), strides=stride,
                            padding=padding, transpose_kernel=transpose_kernel,
                            rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (2, size // 2, size // 2 + 1, 3))
  _check(layer, conv_ops.conv_transpose, x)


def _dilated_convs(fn, *args):
  """The convolutions in ``fn``'s jaxpr (forward and backward) that dilate
  an input: the form XLA:CPU runs slowly."""
  jaxpr = jax.make_jaxpr(fn)(*args)
  found = []

  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      for sub in jax.extend.core.jaxprs_in_params(eqn.params):
        walk(sub)
      if eqn.primitive.name == 'conv_general_dilated':
        p = eqn.params
        if set(p['lhs_dilation']) | set(p['rhs_dilation']) != {1}:
          found.append(p)
  walk(jaxpr.jaxpr)
  return found


def test_the_autoencoder_and_classifier_never_dilate():
  """Pong's F (strided convs, transposed convs) and translated MNIST's F,
  forward and both gradients, run no convolution of a dilated input or
  kernel: the layers' own calls (`lax.conv_transpose`, the gradients of
  strided convs) do."""
  for model, shape in ((ConvAutoencoder((16, 16, 3), rngs=nnx.Rngs(0)),
                        (2, 16, 16, 3)),
                       (ConvClassifier((28, 28, 1), rngs=nnx.Rngs(0)),
                        (2, 28, 28, 1))):
    graphdef, params = nnx.split(model)
    loss = lambda p, x: (nnx.merge(graphdef, p)(x) ** 2).sum()
    x = jnp.ones(shape)
    assert not _dilated_convs(jax.grad(loss, argnums=(0, 1)), params, x)
  # The check itself finds them in the layers' own calls.
  layer = nnx.ConvTranspose(3, 3, (5, 5), strides=2, padding='SAME',
                            rngs=nnx.Rngs(0))
  assert _dilated_convs(lambda x: layer(x), jnp.ones((1, 8, 8, 3)))
  strided = nnx.Conv(3, 3, (5, 5), strides=2, rngs=nnx.Rngs(0))
  assert _dilated_convs(jax.grad(lambda x: strided(x).sum()),
                        jnp.ones((1, 8, 8, 3)))


def test_layers_with_other_settings_run_as_they_are():
  x = jax.random.normal(jax.random.key(1), (2, 9, 9, 4))
  dilated = nnx.Conv(4, 3, (3, 3), kernel_dilation=2, rngs=nnx.Rngs(0))
  grouped = nnx.Conv(4, 4, (3, 3), strides=2, feature_group_count=2,
                     rngs=nnx.Rngs(0))
  circular = nnx.ConvTranspose(4, 3, (3, 3), strides=2, padding='CIRCULAR',
                               rngs=nnx.Rngs(0))
  explicit = nnx.Conv(4, 3, (3, 3), strides=2, padding=((1, 2), (0, 1)),
                      rngs=nnx.Rngs(0))
  for layer, op in ((dilated, conv_ops.conv), (grouped, conv_ops.conv),
                    (circular, conv_ops.conv_transpose),
                    (explicit, conv_ops.conv)):
    np.testing.assert_allclose(op(layer, x), layer(x), rtol=1e-5, atol=1e-5)
