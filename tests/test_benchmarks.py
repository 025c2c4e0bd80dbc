"""The benchmark harness (benchmarks/run.py --quick) and the fast paths it measures."""

import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import ROOT, subprocess_env
from lanjax import training
from lanjax.data import translated_mnist as tm
from lanjax.models import ConvClassifier

_LAN_KEYS = {
    'batch_size', 'num_samples', 'chunk_size', 'step_s', 'cpu_s_per_step',
    'compile_s', 'examples_per_s', 'f_evals_per_s', 'us_per_f_eval',
    'cpu_us_per_f_eval', 'flops', 'flops_per_s', 'fraction_of_matmul_rate',
    'input_pipeline_share', 'recompiles', 'retraces', 'temp_size_in_bytes'}


@pytest.fixture(scope='module')
def quick(tmp_path_factory):
  out = tmp_path_factory.mktemp('bench')
  proc = subprocess.run(
      # One setup (the tests read translated MNIST's rows; every setup's
      # networks are built by test_torch_peer_computes_the_jax_networks).
      [sys.executable, os.path.join(ROOT, 'benchmarks', 'run.py'), '--quick',
       '--setups', 'translated_mnist', '--out', str(out)], cwd=ROOT,
      env=subprocess_env(xla_defaults=True, JAX_PLATFORMS='cpu'),
      capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
  with open(out / 'results.json') as fh:
    results = json.load(fh)
  return results, (out / 'results.md').read_text(), proc.stdout


def _finite_positive(v):
  return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


@pytest.mark.xdist_group('test_benchmarks.quick')  # the fixture runs once
def test_quick_run_schema(quick):
  results, _, _ = quick
  assert results['schema_version'] == 1 and results['plan'] == 'quick'
  assert {'machine', 'matmul', 'setups', 'memory', 'targets'} <= set(results)
  assert _finite_positive(results['matmul']['flops_per_s'])
  mnist = results['setups']['translated_mnist']
  assert [r['num_samples'] for r in mnist['lan_by_k']] == [1, 4]
  for r in mnist['lan_by_k'] + mnist['lan_by_batch']:
    assert _LAN_KEYS <= set(r), _LAN_KEYS - set(r)
    for k in ('step_s', 'examples_per_s', 'f_evals_per_s', 'flops',
              'flops_per_s', 'compile_s'):
      assert _finite_positive(r[k]), (k, r[k])
    # Rates are consistent with the timings they come from.
    assert r['examples_per_s'] == pytest.approx(r['batch_size'] / r['step_s'])
    assert r['f_evals_per_s'] == pytest.approx(
        r['batch_size'] * r['num_samples'] / r['step_s'])
    assert 0 < r['input_pipeline_share'] < 1
  # More noise samples cost more FLOPs per step (XLA's cost analysis).
  assert mnist['lan_by_k'][1]['flops'] > 2 * mnist['lan_by_k'][0]['flops']
  assert _finite_positive(mnist['f_train']['examples_per_s'])
  assert all(_finite_positive(r['masks_per_s']) for r in mnist['a_inference'])
  assert {t['target'] for t in results['targets']} >= {
      'no recompilation in the steady state'}


@pytest.mark.xdist_group('test_benchmarks.quick')  # the fixture runs once
def test_quick_run_does_not_recompile(quick):
  results, _, _ = quick
  mnist = results['setups']['translated_mnist']
  for r in mnist['lan_by_k'] + mnist['lan_by_batch'] + [mnist['f_train']]:
    assert r['recompiles'] == 0 and r['retraces'] == 0, r
    assert r['jit_cache_size'] in (None, 1), r


@pytest.mark.xdist_group('test_benchmarks.quick')  # the fixture runs once
def test_quick_run_memory_shows_chunking(quick):
  results, _, _ = quick
  by_chunk = {r['chunk_size']: r for r in results['memory']}
  assert None in by_chunk and len(by_chunk) >= 2
  chunked = min(r['temp_size_in_bytes'] for c, r in by_chunk.items() if c)
  assert chunked < by_chunk[None]['temp_size_in_bytes']


@pytest.mark.xdist_group('test_benchmarks.quick')  # the fixture runs once
def test_quick_run_writes_markdown_table(quick):
  results, md, stdout = quick
  assert md.startswith('# lanjax benchmarks')
  assert '| K | batch | CPU tiling | examples/s |' in md and '## Targets' in md
  assert md in stdout  # the command prints the table
  for t in results['targets']:
    assert t['target'] in md


# ----------------------------------------------------------------------------
# The fast paths give the results of the plain ones.


def test_cpu_compiler_options_keep_reductions_out_of_ynnpack():
  if jax.default_backend() != 'cpu':
    pytest.skip('CPU only')
  training.compiler_options.cache_clear()
  options = training.compiler_options('cpu')
  if options is None:
    pytest.skip('XLA_FLAGS or LANJAX_XLA_DEFAULTS set, or option unknown')
  assert training.compiler_options('gpu') is None
  g = jnp.ones((8, 128, 28, 28, 1))
  step = training.jit(lambda g: g.sum(0))
  hlo = step.lower(g).compile().as_text()
  assert '__ynn_fusion' not in hlo
  np.testing.assert_array_equal(step(g), jnp.full((128, 28, 28, 1), 8.0))


def test_user_xla_flags_win_over_lanjax_options():
  code = ('from lanjax import training; '
          'print("OPTIONS", training.compiler_options("cpu"))')
  env = subprocess_env(
      XLA_FLAGS='--xla_cpu_experimental_ynn_fusion_type=individual_dot')
  proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=120)
  assert 'OPTIONS None' in proc.stdout, proc.stdout + proc.stderr


def test_place_equals_dynamic_update_slice():
  digits = jax.random.uniform(jax.random.key(0), (64, 12, 12))
  corners = jax.random.randint(jax.random.key(1), (64, 2), -3, 20)
  want = jax.vmap(lambda d, c: jax.lax.dynamic_update_slice(
      jnp.zeros((28, 28)), d, (c[0], c[1])))(digits, corners)[..., None]
  np.testing.assert_array_equal(tm.place(digits, corners, 28), want)
  np.testing.assert_array_equal(
      jax.jit(tm.place, static_argnums=2)(digits, corners, 28), want)


def test_sample_positions_covers_exactly_the_allowed_corners():
  allowed = tm.allowed_positions(28, 12, exclude_corner=12)
  pos = np.asarray(tm.sample_positions(jax.random.key(0), 20_000, allowed))
  counts = np.zeros(allowed.shape, int)
  np.add.at(counts, (pos[:, 0], pos[:, 1]), 1)
  assert (counts[~allowed] == 0).all()
  assert (counts[allowed] > 0).all()
  expected = 20_000 / allowed.sum()
  assert abs(counts[allowed].mean() - expected) < 1e-9
  assert counts[allowed].std() < 0.25 * expected  # uniform, not skewed
  # A traced map falls back to a categorical draw over the same corners.
  traced = jax.jit(lambda a: tm.sample_positions(jax.random.key(0), 500, a))(
      jnp.asarray(allowed))
  assert np.asarray(allowed)[traced[:, 0], traced[:, 1]].all()


def test_conv_classifier_is_the_paper_network():
  f = ConvClassifier((28, 28, 1), rngs=nnx.Rngs(0))
  x = jax.random.uniform(jax.random.key(1), (4, 28, 28, 1))
  h = x
  for conv in f.convs:
    h = jax.nn.leaky_relu(conv(h), 0.01)
  want = f.head(h.reshape(4, -1))
  np.testing.assert_allclose(f(x), want, rtol=1e-5, atol=1e-5)
  assert [c.kernel.shape for c in f.convs] == [(4, 4, 1, 10), (4, 4, 10, 20)]


def test_colab_notebook_is_small_valid_and_without_outputs():
  path = ROOT / 'notebooks' / 'colab_quickstart.ipynb'
  assert path.stat().st_size < 50_000
  nb = json.loads(path.read_text())
  assert nb['nbformat'] == 4
  code = [''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'code']
  assert all(c.get('outputs', []) == [] and c.get('execution_count') is None
             for c in nb['cells'] if c['cell_type'] == 'code')
  text = '\n'.join(code)
  # It runs the repository's own entry points with files that exist.
  for rel in ('train.py', 'benchmarks/run.py', 'configs/translated_mnist.py',
              'requirements.txt'):
    assert rel in text and (ROOT / rel).exists(), rel
  assert ':quick' in text and 'jax[cuda12]==' + jax.__version__ in text
  for c in code:  # every cell is Python once IPython's ! lines are 'pass'
    lines = [l[:len(l) - len(l.lstrip())] + 'pass' if l.strip().startswith('!')
             else l for l in c.splitlines()]
    compile('\n'.join(lines) + '\n', 'notebook', 'exec')


# ----------------------------------------------------------------------------
# The PyTorch peers (benchmarks/torch_peers.py): the same step, or the ratio
# the benchmark prints means nothing.


def _peer(name, batch_size=3, num_samples=2, variant='quick'):
  torch = pytest.importorskip('torch')
  sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))
  import run as bench  # pylint: disable=g-import-not-at-top
  import torch_peers  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  setup = bench.experiment_setup(name, variant)
  peer = torch_peers.build(name, setup, batch_size=batch_size,
                           num_samples=num_samples, variant=variant)
  return torch, bench, setup, peer


def _nhwc(t):
  a = t.detach().numpy()
  return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a


@pytest.mark.parametrize(
    'name,variant', [('translated_mnist', 'quick'), ('pong', 'quick'),
                     ('sdc', 'quick'),
                     ('sdc', None),  # the default's convolutional A
                     # ~10-20 s each to build (eager ops of the synthetic data):
                     pytest.param('newsgroups', 'quick',
                                  marks=pytest.mark.slow),
                     pytest.param('cifar10', 'quick', marks=pytest.mark.slow)])
def test_torch_peer_computes_the_jax_networks(name, variant):
  """F and A of the peer equal the experiment's (same parameters, NCHW
  layout): a wrong padding, kernel flip or flatten order breaks this."""
  torch, _, setup, peer = _peer(name, variant=variant)
  x = peer.draw_x(4)
  xj = jnp.asarray(_nhwc(x))
  with torch.no_grad():
    f_t, a_t = _nhwc(peer.f(x)), _nhwc(peer.a(x))
  f_j = setup.f_apply(setup.lan_data['f_params'], xj)
  a_j = setup.mask_fn(setup.lan_state['params'], xj)
  scale = float(jnp.abs(f_j).max())
  assert scale > 0 and float(jnp.std(a_j)) > 0
  np.testing.assert_allclose(f_t, f_j, atol=1e-5 * max(scale, 1.0))
  np.testing.assert_allclose(a_t, a_j, atol=1e-5)
  # A step trains A (and only A).
  before = [p.detach().clone() for p in peer.a.parameters()]
  f_before = [p.detach().clone() for p in peer.f.parameters()]
  peer.step()
  assert any(not torch.equal(b, p) for b, p in zip(before, peer.a.parameters()))
  assert all(torch.equal(b, p) for b, p in zip(f_before, peer.f.parameters()))


@pytest.mark.parametrize('name', ['translated_mnist', 'pong'])
def test_torch_peer_objective_is_lanjax_objective(name):
  """The peer's loss terms are eq. 3 as `lanjax.lan_terms` computes it, for
  the same x, mask and noise (cross-entropy and squared-error L_F)."""
  import lanjax  # pylint: disable=g-import-not-at-top
  torch, _, setup, peer = _peer(name)
  x = peer.draw_x(3)
  eta = peer.draw_noise(3, 2, x)  # (B, K, ...)
  with torch.no_grad():
    loss, fidelity, mask_mean = peer.objective(x, eta)
    mask = _nhwc(peer.a(x))
  f = lambda z: _nhwc(peer.f(torch.from_numpy(
      np.asarray(z).transpose(0, 3, 1, 2).copy())))
  xj, etaj = _nhwc(x), np.stack([_nhwc(eta[:, k]) for k in range(2)])
  out_loss = (lanjax.softmax_cross_entropy if name == 'translated_mnist'
              else lanjax.squared_error)
  with torch.no_grad():
    fid_j, mean_j = lanjax.lan_terms(
        lambda z: jnp.asarray(f(z)), jnp.asarray(xj), jnp.asarray(mask),
        jnp.asarray(etaj), output_loss=out_loss)
  np.testing.assert_allclose(fidelity.numpy(), fid_j, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(mask_mean.numpy(), mean_j, rtol=1e-5)
  np.testing.assert_allclose(
      float(loss), float((fid_j - peer.beta * mean_j).mean()), rtol=1e-4,
      atol=1e-6)


@pytest.mark.xdist_group('test_benchmarks.quick')  # the fixture runs once
def test_quick_run_peer_rows_and_explanations(quick):
  results, md, _ = quick
  assert 'lan' in results['sections'] and 'explain' in results['sections']
  ex = results['explanations'][0]
  for m in ('lan', 'gradient', 'integrated_gradients', 'smoothgrad'):
    assert _finite_positive(ex['methods'][m]['per_s']), m
  assert ex['lan_over_integrated_gradients'] == pytest.approx(
      ex['methods']['lan']['per_s']
      / ex['methods']['integrated_gradients']['per_s'])
  # IG does 50 gradients of F per map: more work than one gradient.
  assert ex['work_integrated_gradients_over_lan'] > 1
  assert _finite_positive(ex['lan_training_s'])
  assert '## Explanations per second' in md
  if results.get('peers') is None:
    pytest.importorskip('torch')  # no torch: the peers were skipped
  for r in results['peers']:
    assert r['ratio'] == pytest.approx(r['torch_step_s'] / r['lanjax_step_s'])
    assert r['lanjax_examples_per_s'] == pytest.approx(
        r['batch_size'] / r['lanjax_step_s'])
    assert 0 < r['lanjax_fraction_of_matmul_rate'] < 1
  assert [r['num_samples'] for r in results['peers']] == [1, 2]
  assert '## lanjax against the same step in PyTorch' in md
  assert any('PyTorch eager' in t['target'] for t in results['targets'])
