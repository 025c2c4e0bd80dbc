"""The training loop: compiled once, deterministic, resumable, A-only gradients."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from lanjax import noise as noise_lib
from lanjax import training
from lanjax.models import ConvClassifier, LatentAttentionNetwork


def _setup(tmp_path, num_samples=2):
  f = ConvClassifier((8, 8, 1), features=(4,), rngs=nnx.Rngs(0))
  f_graphdef, f_params = nnx.split(f, nnx.Param)
  a = LatentAttentionNetwork((8, 8, 1), (16,), rngs=nnx.Rngs(1))
  a_graphdef, a_params = nnx.split(a, nnx.Param)
  tx = optax.adam(1e-2)
  images = jax.random.uniform(jax.random.key(2), (64, 8, 8, 1))
  labels = jax.random.randint(jax.random.key(3), (64,), 0, 10)
  f_apply = lambda p, x: nnx.merge(f_graphdef, p)(x)

  def batch_fn(data, key):
    return data['images'][jax.random.randint(key, (16,), 0, 64)]

  traces = []

  def counted(update):
    def wrapped(state, data, key):
      traces.append(1)  # runs once per trace, not per step
      return update(state, data, key)
    return wrapped

  update = counted(training.lan_update(
      a_graphdef, tx, f_apply, batch_fn, beta=1.0, num_samples=num_samples))
  data = {'images': images, 'f_params': f_params,
          'noise': noise_lib.BootstrapNoise(images)}
  return dict(update=update, state=training.init_state(a_params, tx),
              data=data, traces=traces, f_params=f_params, labels=labels,
              f_graphdef=f_graphdef, tx=tx)


def _fit(s, workdir, num_steps, **kw):
  return training.fit(s['update'], s['state'], s['data'],
                      rng=jax.random.key(7), num_steps=num_steps,
                      workdir=str(workdir), name='lan', log_every=3,
                      checkpoint_every=4, tensorboard=False, **kw)


def _assert_trees_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def test_train_step_compiles_once(tmp_path):
  s = _setup(tmp_path)
  state = _fit(s, tmp_path / 'run', 10)
  assert int(state['step']) == 10
  assert len(s['traces']) == 1


def test_deterministic_for_a_seed_and_resume_is_identical(tmp_path):
  s = _setup(tmp_path)
  straight = _fit(s, tmp_path / 'a', 10)
  again = _fit(_setup(tmp_path), tmp_path / 'b', 10)
  _assert_trees_equal(straight['params'], again['params'])
  # Stop at 6 (checkpoint at 4 and at 6, the end), then run on to 10.
  s2 = _setup(tmp_path)
  _fit(s2, tmp_path / 'c', 6)
  # A line logged after the last checkpoint by a run that then died.
  with open(tmp_path / 'c' / 'metrics_lan.jsonl', 'a') as fh:
    fh.write(json.dumps({'step': 8, 'loss': 0.0}) + '\n')
  resumed = _fit(_setup(tmp_path), tmp_path / 'c', 10)
  steps = [json.loads(l)['step']
           for l in open(tmp_path / 'c' / 'metrics_lan.jsonl')]
  assert steps == [3, 6, 9, 10]  # the lost step-8 line is gone
  _assert_trees_equal(straight['params'], resumed['params'])
  _assert_trees_equal(straight['opt_state'], resumed['opt_state'])
  # A finished run returns at once from its checkpoint.
  s3 = _setup(tmp_path)
  done = _fit(s3, tmp_path / 'c', 10)
  assert not s3['traces']
  _assert_trees_equal(done['params'], straight['params'])


def test_several_steps_per_dispatch_match_one_and_resume(tmp_path):
  """N steps per call: the same steps' keys and updates as N = 1 (to float
  rounding: the step is compiled inside a loop, where XLA may fuse it
  otherwise), the same report, checkpoint and log steps, and a resumed run
  bitwise equal to an uninterrupted one with the same N."""
  one = _fit(_setup(tmp_path), tmp_path / 'one', 10)
  s = _setup(tmp_path)
  many = _fit(s, tmp_path / 'many', 10, steps_per_dispatch=5)
  assert int(many['step']) == 10
  for x, y in zip(jax.tree.leaves(one), jax.tree.leaves(many)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
  logs = {}
  for run in ('one', 'many'):
    logs[run] = [json.loads(l)
                 for l in open(tmp_path / run / 'metrics_lan.jsonl')]
  # Calls stop at every report (3) and checkpoint (4): 3, 4, 6, 8, 9, 10.
  assert [r['step'] for r in logs['many']] == [3, 6, 9, 10]
  for a, b in zip(logs['one'], logs['many']):
    assert a['step'] == b['step']
    np.testing.assert_allclose(a['loss'], b['loss'], rtol=1e-5)
  assert sorted(os.listdir(tmp_path / 'many' / 'checkpoints' / 'lan')) == (
      sorted(os.listdir(tmp_path / 'one' / 'checkpoints' / 'lan')))
  # Resume mid-way with N = 5: bitwise the uninterrupted N = 5 run.
  _fit(_setup(tmp_path), tmp_path / 'c', 6, steps_per_dispatch=5)
  resumed = _fit(_setup(tmp_path), tmp_path / 'c', 10, steps_per_dispatch=5)
  _assert_trees_equal(many['params'], resumed['params'])
  _assert_trees_equal(many['opt_state'], resumed['opt_state'])


def test_lan_training_changes_a_and_logs(tmp_path):
  # F's parameters are data, never written (no assertion on them could fail);
  # that the step differentiates A alone is checked exactly in
  # test_training_behaviour.py (one step against lan_loss's gradient).
  s = _setup(tmp_path)
  a_before = jax.tree.map(np.asarray, s['state']['params'])
  state = _fit(s, tmp_path / 'run', 6)
  changed = [not np.array_equal(x, y) for x, y in zip(
      jax.tree.leaves(a_before), jax.tree.leaves(state['params']))]
  assert all(changed)
  lines = [json.loads(l) for l in open(tmp_path / 'run' / 'metrics_lan.jsonl')]
  assert [l['step'] for l in lines] == [3, 6]
  assert {'loss', 'fidelity_loss', 'mask_mean', 'steps_per_sec'} <= set(lines[0])
  assert os.path.isdir(tmp_path / 'run' / 'checkpoints' / 'lan' / '6')


def test_non_finite_update_is_skipped():
  params = {'w': jnp.ones(3)}
  tx = optax.sgd(0.1)
  state = training.init_state(params, tx)
  grads = {'w': jnp.array([1.0, jnp.nan, 1.0])}
  new, finite = training.apply_gradients(state, grads, jnp.float32(1.0), tx)
  assert float(finite) == 0.0
  np.testing.assert_array_equal(new['params']['w'], params['w'])
  new, finite = training.apply_gradients(state, {'w': jnp.ones(3)},
                                         jnp.float32(1.0), tx)
  assert float(finite) == 1.0
  np.testing.assert_allclose(new['params']['w'], 0.9)


def test_classifier_update_learns(tmp_path):
  # A linearly separable toy task: F must fit it well above chance.
  s = _setup(tmp_path)
  images = s['data']['images']
  labels = (images.mean((1, 2, 3)) > 0.5).astype(jnp.int32)
  f = ConvClassifier((8, 8, 1), features=(4,), num_classes=2,
                     rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(f, nnx.Param)
  tx = optax.adam(3e-2)

  def batch_fn(data, key):
    idx = jax.random.randint(key, (32,), 0, 64)
    return {'x': data['x'][idx], 'y': data['y'][idx]}

  state = training.fit(
      training.classifier_update(graphdef, tx, batch_fn),
      training.init_state(params, tx), {'x': images, 'y': labels},
      rng=jax.random.key(0), num_steps=150, workdir=str(tmp_path / 'f'),
      name='f', log_every=50, checkpoint_every=150, tensorboard=False)
  logits = nnx.merge(graphdef, state['params'])(images)
  assert float((jnp.argmax(logits, -1) == labels).mean()) > 0.85


def test_read_metric_skips_a_cut_off_line(tmp_path):
  path = tmp_path / 'm.jsonl'
  path.write_text('{"step": 2, "test_accuracy": 0.5}\n{"step": 3, "loss": 1}\n'
                  '{"step": 4, "test_accuracy": 0.75}\n{"step": 5, "test_acc')
  assert training.read_metric(str(path), 'test_accuracy') == [[2, 0.5],
                                                              [4, 0.75]]
  assert training.read_metric(str(tmp_path / 'missing.jsonl'), 'loss') == []


def test_jit_hoisting_constants_passes_closed_over_arrays_as_arguments():
  test_x = jax.random.normal(jax.random.key(0), (500, 7))
  fn = lambda p: {'sum': (test_x @ p['w']).sum(), 'w2': p['w'] * 2}
  params = {'w': jnp.ones((7, 3))}
  hoisted = training.jit_hoisting_constants(fn, params)
  for w in (params['w'], jnp.arange(21.).reshape(7, 3)):
    got, want = hoisted({'w': w}), fn({'w': w})
    assert jax.tree.structure(got) == jax.tree.structure(want)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
                 got, want)
  # The 500 x 7 test set is an argument of the program, not a constant; a
  # plain jax.jit embeds it (the check tells the two apart).
  def main_and_constants(lowered):
    lines = lowered.as_text().splitlines()
    main = next(l for l in lines if 'func.func public @main' in l)
    return main, [l for l in lines if 'stablehlo.constant' in l]
  main, consts = main_and_constants(hoisted.lower(params))
  assert 'tensor<500x7xf32>' in main
  assert not any('500x7' in l for l in consts)
  main, consts = main_and_constants(jax.jit(fn).lower(params))
  assert 'tensor<500x7xf32>' not in main
  assert any('dense<"0x' in l for l in consts)
