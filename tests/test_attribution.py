"""Attribution methods (lanjax.attribution) against hand-checkable facts."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lanjax
from lanjax import attribution as at

# rbg keys compile much faster than threefry on CPU (the methods take any key).
KEY = jax.random.key(0, impl='rbg')


def _normal(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape),
                     jnp.float32)


def _uniform(shape, seed=0, low=0.0, high=1.0):
  return jnp.asarray(np.random.default_rng(seed).uniform(low, high, shape),
                     jnp.float32)


def _linear(w):
  """F(x) = flat(x) @ w: logits (B, C)."""
  return lambda x: x.reshape(x.shape[0], -1) @ w


def _first_output(out, x):
  del x
  return out[:, 0]


def _mlp(d=16, hidden=12, classes=3, seed=0):
  w1 = _normal((d, hidden), seed) / np.sqrt(d)
  w2 = _normal((hidden, classes), seed + 1)
  return lambda x: jnp.tanh(x.reshape(x.shape[0], -1) @ w1) @ w2


# ----------------------------------------------------------------------------
# Gradient methods.


def test_gradient_of_linear_f_is_its_weights():
  w = _normal((6, 3), 0)
  x = _normal((4, 6), 1)
  g = at.gradient(_linear(w), x, score=_first_output, absolute=False)
  np.testing.assert_allclose(g, jnp.broadcast_to(w[:, 0], x.shape), rtol=1e-6)
  np.testing.assert_allclose(
      at.gradient(_linear(w), x, score=_first_output), jnp.abs(g))


def test_default_score_is_log_probability_of_clean_prediction():
  w = _normal((6, 3), 0)
  x = _normal((4, 6), 1)
  f = _linear(w)
  p = jax.nn.softmax(f(x))
  c = jnp.argmax(f(x), -1)
  # d/dx log softmax(xW)_c = W[:, c] - sum_j p_j W[:, j]
  expected = w[:, c].T - p @ w.T
  g = at.gradient(f, x, absolute=False)
  np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-6)
  other = (c + 1) % 3
  g_other = at.gradient(f, x, target=other, absolute=False)
  np.testing.assert_allclose(g_other, w[:, other].T - p @ w.T, rtol=1e-5,
                             atol=1e-6)


def test_gradient_x_input_is_gradient_times_input_minus_baseline():
  f = _mlp()
  x = _normal((3, 16), 0)
  g = at.gradient(f, x, absolute=False)
  np.testing.assert_allclose(at.gradient_x_input(f, x), g * x, rtol=1e-6)
  np.testing.assert_allclose(at.gradient_x_input(f, x, baseline=0.5),
                             g * (x - 0.5), rtol=1e-6)
  # A named score is the one differentiated.
  w = _normal((16, 3), 1)
  np.testing.assert_allclose(
      at.gradient_x_input(_linear(w), x, score=_first_output),
      w[:, 0] * x, rtol=1e-6)


@pytest.mark.parametrize('baseline', [0.0, 0.3])
def test_integrated_gradients_are_complete(baseline):
  f = _mlp()
  x = _normal((5, 16), 0)
  ig = at.integrated_gradients(f, x, baseline=baseline, num_steps=128)
  s = at.output_score(f, x)
  expected = s(f(x)) - s(f(jnp.full_like(x, baseline)))
  assert int((jnp.abs(expected) > 0.2).sum()) >= 3  # a non-trivial check
  np.testing.assert_allclose(ig.sum(-1), expected, rtol=0.01, atol=1e-3)
  # Not gradient x input: F is nonlinear along the path.
  assert not np.allclose(ig, at.gradient_x_input(f, x, baseline=baseline),
                         rtol=0.05)


def test_smoothgrad_with_sigma_zero_is_the_wrapped_method():
  f = _mlp()
  x = _normal((3, 16), 0)
  for name in ('gradient', 'gradient_x_input'):
    sg = at.smoothgrad(f, x, key=KEY, method=name, sigma=0.0, num_samples=4)
    np.testing.assert_allclose(sg, at.get_method(name)(f, x), rtol=1e-5,
                               atol=1e-7)
  noisy = at.smoothgrad(f, x, key=KEY, sigma=0.3, num_samples=4)
  assert not np.allclose(noisy, at.gradient(f, x), atol=1e-3)


def test_smoothgrad_gives_a_wrapped_random_method_its_keys():
  # Each noisy copy's method gets a key of its own: RISE refuses to run
  # without one.
  f = lambda v: jnp.stack([v.reshape(v.shape[0], -1).sum(-1),
                           jnp.zeros(v.shape[0])], -1)
  x = _uniform((1, 4, 4, 1))
  sg = at.smoothgrad(f, x, key=KEY, method='rise', sigma=0.0, num_samples=2,
                     num_masks=2, grid_size=2)
  assert sg.shape == x.shape and bool(jnp.isfinite(sg).all())


def test_smoothgrad_explains_the_clean_prediction():
  # F's prediction flips under noise; SmoothGrad must keep the clean class.
  w = jnp.array([[1.0, -1.0], [0.0, 0.0]])
  f = _linear(w)
  x = jnp.array([[0.01, 1.0]])  # class 0, barely; value range 1
  sg = at.smoothgrad(f, x, key=KEY, sigma=5.0, num_samples=256,
                     absolute=False)
  # d/dx0 log p_0 = 2 (1 - p_0) > 0, averaging to about 1 over the noise;
  # the class predicted on each noisy copy would average to about 0.
  assert float(sg[0, 0]) > 0.6
  assert float(sg[0, 1]) == 0.0


def test_score_gets_the_clean_batch():
  # score(out, x) reads the clean x (held fixed): d/dv sum(2 v * x) = 2 x.
  x = jnp.array([[1.0, -2.0, 3.0]])
  g = at.gradient(lambda v: 2.0 * v, x, score=lambda out, x: (out * x).sum(-1),
                  absolute=False)
  np.testing.assert_allclose(g, 2.0 * x)


def test_smoothgrad_noise_has_std_sigma_times_the_value_range():
  # s(x) = sum x^3: its gradient 3 x^2 averages to 3 (x^2 + s^2) over
  # Gaussian noise of std s = sigma * (max x - min x), here 0.5 * 4 = 2.
  x = jnp.array([[0.0, 1.0, 2.0, 4.0]])
  cube = lambda out, x: out.sum(-1)
  sg = at.smoothgrad(lambda v: v ** 3, x, key=KEY, sigma=0.5,
                     num_samples=4096, chunk_size=None, score=cube,
                     absolute=False)
  want = 3 * (x ** 2 + 4.0)
  # Standard error of the mean: sqrt(var(3 (x + e)^2) / 4096) <= 0.6 here.
  np.testing.assert_allclose(sg, want, atol=2.5)


# ----------------------------------------------------------------------------
# Perturbation methods.


def _windows_reference(x, w, baseline, window, stride):
  """Occlusion of s(x) = sum(w * x) by loops: mean over covering windows."""
  _, h, wd, _ = x.shape
  total = np.zeros(x.shape)
  count = np.zeros(x.shape)
  rows = sorted(set(list(range(0, h - window + 1, stride)) + [h - window]))
  cols = sorted(set(list(range(0, wd - window + 1, stride)) + [wd - window]))
  contrib = np.asarray(w * (x - baseline))
  for r in rows:
    for c in cols:
      drop = contrib[:, r:r + window, c:c + window].sum((1, 2, 3))
      total[:, r:r + window, c:c + window] += drop[:, None, None, None]
      count[:, r:r + window, c:c + window] += 1
  return total / count


@pytest.mark.parametrize('window,stride', [(2, 2), (3, 2), (2, 1)])
def test_occlusion_of_linear_f_is_weighted_input_per_window(window, stride):
  w = _normal((1, 5, 5, 1), 0)
  x = _normal((2, 5, 5, 1), 1)
  f = lambda z: (z * w).sum((1, 2, 3))[:, None]
  occ = at.occlusion(f, x, score=_first_output, window=window, stride=stride,
                     noise=lanjax.ConstantNoise(0.5))
  assert occ.shape == (2, 5, 5, 1)
  np.testing.assert_allclose(
      occ, _windows_reference(x, w, 0.5, window, stride), rtol=1e-5,
      atol=1e-5)


def test_occlusion_replaces_all_channels_of_a_window():
  w = _normal((1, 4, 4, 3), 0)
  x = _normal((2, 4, 4, 3), 1)
  f = lambda z: (z * w).sum((1, 2, 3))[:, None]
  occ = at.occlusion(f, x, score=_first_output, window=2, stride=2)
  assert occ.shape == (2, 4, 4, 1)
  block = (w * x)[:, :2, :2].sum((1, 2, 3))
  np.testing.assert_allclose(occ[:, 0, 0, 0], block, rtol=1e-5)


def test_rise_converges_to_the_one_pixel_f_reads():
  j = (5, 2)
  x = _uniform((2, 8, 8, 1), 0, low=0.5, high=1.0)
  f = lambda z: z[:, j[0], j[1], :]  # (B, 1): reads one pixel
  keep = 0.5
  imp = at.rise(f, x, key=KEY, score=_first_output, num_masks=4000,
                grid_size=4, keep=keep, chunk_size=1000)
  flat = imp.reshape(2, -1)
  np.testing.assert_array_equal(jnp.argmax(flat, -1), j[0] * 8 + j[1])
  # A pixel far from j is independent of it: its weighted mean is
  # E[s] = x_j * E[M] = x_j * keep.
  far = imp[:, 0, 7, 0]
  np.testing.assert_allclose(far, x[:, j[0], j[1], 0] * keep, rtol=0.08)
  # At j it is x_j E[M^2] / E[M] > x_j * keep.
  assert bool(jnp.all(imp[:, j[0], j[1], 0] > 1.2 * far))


def test_rise_masks_are_smooth_shifted_and_in_range():
  m = at.random_smooth_mask(KEY, (28, 28), grid_size=7, keep=0.5)
  assert m.shape == (28, 28)
  assert float(m.min()) >= 0 and float(m.max()) <= 1
  assert float(jnp.abs(jnp.diff(m, axis=0)).max()) <= 0.25 + 1e-6  # 1 / cell
  masks = jax.vmap(lambda k: at.random_smooth_mask(
      k, (28, 28), grid_size=7, keep=0.3))(jax.random.split(KEY, 400))
  np.testing.assert_allclose(float(masks.mean()), 0.3, atol=0.03)


# ----------------------------------------------------------------------------
# Mask methods.


def test_mask_optimisation_finds_the_inputs_f_reads():
  w = _normal((8, 32), 0)
  v = _normal((32, 10), 1)
  f = lambda x: jnp.tanh(x[:, :8] @ w) @ v  # reads 8 of 64 inputs
  pool = _normal((500, 64), 2)
  imp = at.mask_optimisation(f, pool[:6], key=KEY,
                             noise=lanjax.BootstrapNoise(pool), beta=5.0,
                             num_steps=150, learning_rate=0.2)
  assert imp.shape == (6, 64)
  assert float(imp.min()) >= 0 and float(imp.max()) <= 1
  assert float(imp[:, :8].mean()) > float(imp[:, 8:].mean()) + 0.4


def test_mask_optimisation_examples_do_not_interact():
  f = _mlp(d=10)
  x = _normal((4, 10), 0)
  kw = dict(key=KEY, noise=lanjax.ConstantNoise(0.0), beta=1.0, num_steps=20)
  full = at.mask_optimisation(f, x, **kw)
  # Constant noise: the key does not matter, so halves equal the whole.
  half = at.mask_optimisation(f, x[:2], **kw)
  np.testing.assert_allclose(full[:2], half, rtol=1e-5, atol=1e-6)
  tiled = at.mask_optimisation(f, x, mask_shape=(1,), **kw)
  assert tiled.shape == (4, 1)


def test_lan_is_one_minus_the_mask():
  x = _uniform((3, 4, 4, 3), 0)
  a = lambda z: z.mean(-1, keepdims=True)
  np.testing.assert_allclose(at.lan(None, x, mask_fn=a), 1 - a(x))
  with pytest.raises(ValueError, match='does not broadcast'):
    at.lan(None, x, mask_fn=lambda z: z[:, :2])


# ----------------------------------------------------------------------------
# One interface: jit, vmap, chunks, names.


def _conv_f():
  k = _normal((3, 3, 1, 4), 0)
  w = _normal((8 * 8 * 4, 3), 1) / 16

  def f(x):
    h = jax.lax.conv_general_dilated(x, k, (1, 1), 'SAME',
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return jnp.tanh(h).reshape(x.shape[0], -1) @ w
  return f


DETERMINISTIC = {
    'gradient': {}, 'gradient_x_input': {},
    'integrated_gradients': dict(num_steps=8),
    'occlusion': dict(window=3, stride=2),
}


@pytest.mark.parametrize('name', sorted(DETERMINISTIC))
def test_deterministic_methods_are_jit_and_vmap_safe(name):
  f = _conv_f()
  x = _uniform((4, 8, 8, 1), 0)
  explain = at.explainer(name, **DETERMINISTIC[name])
  eager = explain(f, x, None)
  jitted = jax.jit(lambda z: explain(f, z, None))(x)
  np.testing.assert_allclose(jitted, eager, rtol=1e-4, atol=1e-6)
  grouped = jax.vmap(lambda z: explain(f, z, None))(x.reshape(2, 2, 8, 8, 1))
  np.testing.assert_allclose(grouped.reshape(eager.shape), eager, rtol=1e-4,
                             atol=1e-6)


RANDOM = {
    'smoothgrad': dict(num_samples=6, sigma=0.2),
    'rise': dict(num_masks=50, grid_size=4),
    'random': {},
    'mask_optimisation': dict(noise=lanjax.ConstantNoise(0.0), beta=1.0,
                              num_steps=5),
}


@pytest.mark.parametrize('name', sorted(RANDOM))
def test_random_methods_are_jit_safe_and_keyed(name):
  f = _conv_f()
  x = _uniform((3, 8, 8, 1), 0)
  explain = at.explainer(name, **RANDOM[name])
  eager = explain(f, x, KEY)
  np.testing.assert_allclose(
      jax.jit(lambda z, k: explain(f, z, k))(x, KEY), eager, rtol=1e-4,
      atol=1e-6)
  if name != 'mask_optimisation':  # constant noise: no randomness
    assert not np.allclose(explain(f, x, jax.random.key(7, impl='rbg')), eager)
  with pytest.raises(ValueError, match=f'^{at.get_method(name).__name__} '
                     'is random: pass key='):
    explain(f, x, None)


@pytest.mark.parametrize('name,kwargs,chunk', [
    ('smoothgrad', dict(num_samples=7, sigma=0.2), 3),
    ('integrated_gradients', dict(num_steps=10), 4),
    ('occlusion', dict(window=3, stride=2, noise=lanjax.BootstrapNoise(
        _uniform((10, 8, 8, 1), 3))), 5),
    ('rise', dict(num_masks=23, grid_size=4), 8),
])
def test_chunked_equals_unchunked(name, kwargs, chunk):
  f = _conv_f()
  x = _uniform((2, 8, 8, 1), 0)
  method = at.get_method(name)
  # A threefry key: its draws under vmap equal a loop's (rbg's do not).
  key = jax.random.key(0)
  whole, chunked = jax.jit(lambda x: (
      method(f, x, key=key, chunk_size=None, **kwargs),
      method(f, x, key=key, chunk_size=chunk, **kwargs)))(x)
  np.testing.assert_allclose(chunked, whole, rtol=1e-4, atol=1e-6)


def test_defaults_are_the_documented_settings():
  # The signature's defaults are those the docs and configs rely on.
  f = _linear(_normal((64, 3), 0))
  x = _uniform((1, 8, 8, 1), 0)
  for method, cheap, documented in (
      (at.rise, dict(num_masks=8), dict(grid_size=7, keep=0.5)),
      (at.smoothgrad, dict(num_samples=2), dict(sigma=0.15)),
      (at.integrated_gradients, {}, dict(num_steps=64, baseline=0.0)),
      (at.occlusion, {}, dict(window=4, stride=2))):
    # The same program (traced, not run): the same settings.
    program = lambda **kw: str(jax.make_jaxpr(
        lambda z: method(f, z, key=KEY, chunk_size=None, **cheap, **kw))(x))
    assert program() == program(**documented), method.__name__


def test_sum_over_matches_a_python_sum():
  items = (jnp.arange(7.0), jnp.arange(7.0) * 2)
  fn = lambda it: (it[0] * it[1], jnp.stack([it[0], 1.0]))
  expected = (sum(i * 2 * i for i in range(7)), np.array([21.0, 7.0]))
  for chunk in (None, 1, 3, 7, 10):
    got = at.sum_over(fn, items, chunk_size=chunk)
    np.testing.assert_allclose(got[0], expected[0])
    np.testing.assert_allclose(got[1], expected[1])
  # Sums keep fn's dtype (integers stay exact; float16 stays float16).
  ints = at.sum_over(lambda v: v * 2, jnp.arange(7), chunk_size=3)
  assert ints.dtype == jnp.int32 and int(ints) == 42
  half = at.sum_over(lambda v: v, jnp.ones(7, jnp.float16), chunk_size=3)
  assert half.dtype == jnp.float16 and float(half) == 7.0



def test_rise_keeps_a_float16_input_in_float16():
  # The masks take the input's dtype: F gets float16 inputs as it would
  # without RISE, and the map is float16 like the input.
  seen = []

  def f(x):
    seen.append(x.dtype)
    return jnp.stack([x.reshape(x.shape[0], -1).sum(-1),
                      jnp.zeros(x.shape[0], x.dtype)], -1)

  x = jnp.ones((2, 8, 8, 1), jnp.float16)
  m = at.rise(f, x, key=KEY, num_masks=8, chunk_size=4,
              score=lambda out, x: out[:, 0])
  assert m.dtype == jnp.float16 and all(d == jnp.float16 for d in seen)
  assert float(m.min()) > 0  # every pixel kept by some mask adds to F

def test_autoencoder_needs_a_named_score():
  ae = lambda x: jnp.tanh(x)  # output of the input's shape
  x = _normal((2, 5, 1), 0)
  with pytest.raises(ValueError, match='score='):
    at.gradient(ae, x)
  g = at.gradient(ae, x, score=lambda out, x: out[:, 1, 0], absolute=False)
  expected = jnp.zeros_like(x).at[:, 1].set(1 - jnp.tanh(x[:, 1]) ** 2)
  assert float(jnp.abs(expected).sum()) > 0
  np.testing.assert_allclose(g, expected, rtol=1e-6)
  with pytest.raises(ValueError, match='one scalar per example'):
    at.gradient(ae, x, score=lambda out, x: out)


@pytest.mark.parametrize('call,match', [
    (lambda f, x: at.integrated_gradients(f, x, chunk_size=0), 'chunk_size'),
    (lambda f, x: at.integrated_gradients(f, x, num_steps=2.5), 'num_steps'),
    (lambda f, x: at.smoothgrad(f, x, key=KEY, sigma=-1.0), 'sigma'),
    (lambda f, x: at.smoothgrad(f, x, key=KEY, num_samples=0),
     '^num_samples must be a positive int'),
    (lambda f, x: at.mask_optimisation(
        f, x, key=KEY, noise=lanjax.ConstantNoise(0.), beta=1.0,
        num_samples=0), '^num_samples must be a positive int'),
    (lambda f, x: at.mask_optimisation(
        f, x, key=KEY, noise=lanjax.ConstantNoise(0.), beta=1.0,
        num_steps=0), '^num_steps must be a positive int'),
    (lambda f, x: at.rise(f, x, key=KEY, num_masks=0),
     '^num_masks must be a positive int'),
    (lambda f, x: at.rise(f, x, key=KEY, grid_size=0),
     '^grid_size must be a positive int'),
    (lambda f, x: at.rise(f, x, key=KEY, keep=1.0), 'keep'),
    (lambda f, x: at.rise(f, x, key=KEY, chunk_size=0),
     r'^chunk_size must be a positive int or None, got 0\.'),
    (lambda f, x: at.occlusion(f, x, window=9), 'window'),
    (lambda f, x: at.occlusion(f, x, window=(2, 2, 2)), 'window'),
    (lambda f, x: at.occlusion(
        f, x, noise=lanjax.BootstrapNoise(x)), 'key'),
    (lambda f, x: at.gradient(f, x, target=jnp.zeros(3, int)), 'target'),
    (lambda f, x: at.gradient(f, x, target=jnp.zeros(2, int),
                              score=_first_output), 'not both'),
    (lambda f, x: at.mask_optimisation(
        f, x, key=KEY, noise=lanjax.ConstantNoise(0.), beta=0.0), 'beta'),
    (lambda f, x: at.explainer('saliency'), 'Unknown attribution method'),
])
def test_bad_arguments_are_named(call, match):
  with pytest.raises(ValueError, match=match):
    call(_conv_f(), jnp.ones((2, 8, 8, 1)))


def test_methods_registry_is_complete():
  assert set(at.METHODS) >= {
      'gradient', 'gradient_x_input', 'smoothgrad', 'integrated_gradients',
      'occlusion', 'rise', 'mask_optimisation', 'lan', 'random'}
  assert at.get_method('rise') is at.rise
  partial = functools.partial(at.gradient, absolute=False)
  assert at.explainer(partial)(_linear(jnp.eye(2)), jnp.ones((1, 2)),
                               None).shape == (1, 2)
