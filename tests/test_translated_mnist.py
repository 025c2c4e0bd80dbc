"""Translated MNIST: the domain generator and an end-to-end quick run."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from lanjax import metrics as metrics_lib
from lanjax import training
from lanjax.data import translated_mnist as tm
from lanjax.experiments import skeleton
from lanjax.experiments import translated_mnist
from conftest import ROOT, load_config, subprocess_env


def test_allowed_positions_exclude_the_corner():
  full = tm.allowed_positions(28, 12)
  assert full.shape == (17, 17) and full.all()
  corner = tm.allowed_positions(28, 12, exclude_corner=12)
  # A 12x12 digit at (r, c) overlaps rows/cols 16..27 iff r > 4 and c > 4.
  r, c = np.meshgrid(np.arange(17), np.arange(17), indexing='ij')
  np.testing.assert_array_equal(corner, ~((r > 4) & (c > 4)))


def test_placement_puts_the_digit_in_its_box_uniformly():
  digits = jnp.ones((4000, 12, 12))
  x, corners = jax.jit(tm.sample, static_argnums=3)(
      jax.random.key(0), digits, tm.allowed_positions(28, 12), 28)
  assert x.shape == (4000, 28, 28, 1)
  for i in range(5):
    r, c = map(int, corners[i])
    np.testing.assert_array_equal(x[i, r:r + 12, c:c + 12, 0], 1.0)
    assert float(x[i].sum()) == 144.0
  counts = np.bincount(np.asarray(corners[:, 0]), minlength=17)
  assert counts.min() > 0.5 * 4000 / 17 and counts.max() < 1.5 * 4000 / 17
  # Fresh placements for a fresh key.
  _, corners2 = tm.sample(jax.random.key(1), digits[:100],
                          tm.allowed_positions(28, 12), 28)
  assert not np.array_equal(corners[:100], corners2)


def test_excluded_corner_is_never_touched():
  digits = jnp.ones((3000, 12, 12))
  x, _ = tm.sample(jax.random.key(0), digits,
                   tm.allowed_positions(28, 12, exclude_corner=12), 28)
  assert float(x[:, 16:, 16:].sum()) == 0.0
  assert float(x[:, :16, :].sum()) > 0  # digits do appear elsewhere


def test_small_digits_are_centred():
  d = jnp.zeros((1, 7, 7)).at[0, 3, 3].set(1.0)  # the centre pixel
  x = tm.place_centred(d, (10, 20))
  assert float(x[0, 10, 20, 0]) == 1.0 and float(x.sum()) == 1.0


def test_resize_keeps_range_and_shape():
  images = np.random.RandomState(0).randint(0, 256, (3, 28, 28, 1)) / 255.0
  out = tm.resize_digits(images, 12)
  assert out.shape == (3, 12, 12)
  assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_random_mask_control_is_the_lan_mask_permuted_per_image():
  # F reads pixel (0, 0) only: class 0 while it stays above 0.5. The LAN
  # mask corrupts every pixel but that one, so F keeps its prediction; the
  # control (the same mask, permuted per image) corrupts pixel (0, 0) unless
  # its one 0 lands there.
  f = lambda x: jnp.stack([x[:, 0, 0, 0], jnp.full(x.shape[0], 0.5)], -1)
  x = jnp.ones((64, 4, 4, 1))
  mask = jnp.ones_like(x).at[:, 0, 0].set(0.0)
  key = jax.random.key(0)
  lan, control = translated_mnist.mask_agreements(f, x, mask, jnp.zeros_like(x),
                                                  key=key)
  np.testing.assert_array_equal(lan, 1.0)
  kept = np.asarray(metrics_lib.permuted(key, mask))[:, 0, 0, 0] == 0.0
  np.testing.assert_array_equal(control, kept.astype(np.float32))
  assert 0 < kept.sum() < 16  # about 64 / 16 images keep pixel (0, 0)


@pytest.mark.slow
def test_quick_experiment_end_to_end_on_mock_data(tmp_path):
  # The suite's one end-to-end run of every attribution method (the other
  # experiments' end-to-end tests compare a few).
  config = load_config('translated_mnist', 'quick')
  config.data.data_dir = str(tmp_path / 'no_data_here')
  config.data.train_limit = 200
  config.data.test_limit = 100
  config.eval.num_examples = 100
  config.eval.small_digit_examples = 20
  with tfds.testing.mock_data(num_examples=200):
    skeleton.train(translated_mnist.EXPERIMENT, config, str(tmp_path))
    summary = skeleton.evaluate(translated_mnist.EXPERIMENT, config,
                                str(tmp_path))
  for domain in ('standard', 'corner'):
    d = tmp_path / domain
    for name in ('fig2_attention_maps.png', 'fig3_grid.png',
                 'fig3_small_digit_accuracy.png', 'metrics.json'):
      assert (d / name).stat().st_size > 0, name
    m = json.loads((d / 'metrics.json').read_text())
    # evaluate reads the F that training ended with: its accuracy equals
    # the last point of F's learning curve, measured during training by
    # another program on the same test set. (The importance mass in the box
    # is checked by the claim blob_around_digit, false below.)
    curve = training.read_metric(str(d / 'metrics_f.jsonl'), 'test_accuracy')
    assert curve[-1][0] == config.f.num_steps
    assert m['f_test_accuracy'] == pytest.approx(curve[-1][1], abs=1e-6)
    assert m['f_step'] == config.f.num_steps
    assert m['lan_step'] == config.lan.num_steps
  assert set(summary['claims']) >= {
      'standard/blob_around_digit', 'corner/corner_accuracy_drops_when_excluded',
      'standard/lan_mask_keeps_prediction_better_than_random_mask'}
  # 100 steps of F on random mock images: every claim must fail (a claim
  # that holds on an untrained run says nothing about the trained one).
  assert not any(summary['claims'].values()), summary['claims']
  for c in summary['claims_detail'].values():
    assert c['ci95'][0] <= c['effect'] <= c['ci95'][1]
  table = json.loads((tmp_path / 'standard' / 'metrics.json').read_text())[
      'comparison']
  assert set(table['methods']) == set(config.eval.methods)
  assert 'sanity_pass' in table['methods']['lan']
  assert (tmp_path / 'standard' / 'comparison.md').stat().st_size > 0
  # Explain an existing F from another work dir: F is loaded, not trained.
  config.f.init_from = str(tmp_path)
  config.domains = ('standard',)
  with tfds.testing.mock_data(num_examples=200):
    skeleton.train(translated_mnist.EXPERIMENT, config,
                   str(tmp_path / 'explain'))
  assert not (tmp_path / 'explain' / 'standard' / 'checkpoints' / 'f').exists()
  explains = json.loads(
      (tmp_path / 'explain' / 'standard' / 'lan_explains.json').read_text())
  assert explains['f_checkpoint'] == str(
      tmp_path / 'standard' / 'checkpoints' / 'f')
  assert explains['f_step'] == config.f.num_steps


@pytest.mark.slow
def test_train_then_evaluate_cli_on_real_mnist_makes_the_claims_hold(
    tmp_path, shared_tfds_dir):
  """train.py then evaluate.py on real digits, trained just enough (F 1,500
  steps, A 1,000) for the LAN claims to hold; the mock-data test above shows
  them false on an untrained run. A flipped beta, a mask that ignores the
  input or corrupts the wrong pixels fails here."""
  env = subprocess_env(TFDS_DATA_DIR=shared_tfds_dir)
  common = ['--config', str(ROOT / 'configs' / 'translated_mnist.py:quick'),
            '--workdir', str(tmp_path), "--config.domains=('standard',)",
            '--config.data.train_limit=20000', '--config.f.num_steps=1500',
            '--config.lan.num_steps=1000', '--config.lan.num_samples=1',
            '--config.f.eval_every=1500', '--config.checkpoint_every=1000',
            '--config.log_every=500', '--config.eval.compare_examples=0']
  run = lambda script, *extra: subprocess.run(
      [sys.executable, str(ROOT / script), *common, *extra], env=env,
      capture_output=True, text=True, timeout=600)
  r = run('train.py', '--config.evaluate_after_train=False')
  assert r.returncode == 0, r.stderr[-3000:]
  assert '[f] step 1500/1500' in r.stdout and '[lan] step 1000/1000' in r.stdout
  assert not (tmp_path / 'metrics.json').exists()
  r = run('evaluate.py')
  assert r.returncode == 0, r.stderr[-3000:]
  m = json.loads((tmp_path / 'standard' / 'metrics.json').read_text())
  assert m['f_test_accuracy'] > 0.8
  for name in ('lan_mask_keeps_prediction_better_than_random_mask',
               'blob_around_digit', 'input_specific_attention_points_at_digit',
               'accuracy_falls_at_border'):
    detail = m['claims'][name]
    assert detail['holds'], (name, detail)
  assert os.path.exists(tmp_path / 'config.json')
  assert (tmp_path / 'tensorboard' / 'f').is_dir() or (
      tmp_path / 'standard' / 'tensorboard' / 'f').is_dir()
