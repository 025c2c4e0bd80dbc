"""Data parallelism: 8 simulated CPU devices train like one.

The device count must be set before JAX starts, so the training runs in a
subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``.
"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import ROOT, subprocess_env

_SCRIPT = textwrap.dedent('''
    import dataclasses, json, sys, tempfile
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    from configs import translated_mnist as cfg
    from lanjax import training
    from lanjax.experiments import skeleton
    from lanjax.experiments import translated_mnist as tmx

    assert jax.device_count() == 8, jax.devices()
    config = cfg.get_config('quick')
    config.f.batch_size = config.lan.batch_size = 32
    num_samples = 3
    key = jax.random.key(0)
    digits = jax.random.uniform(key, (256, 12, 12))
    labels = jax.random.randint(key, (256,), 0, 10)
    train = {'digits': digits, 'labels': labels}
    config.eval.num_examples = 16
    task = tmx.make_task(config, {'train': train, 'test': train}, 'standard')
    seen = []  # (role, global shape, per-device shard shape, devices)

    def inspect(role, x):
      def record(sharding):
        seen.append((role, list(x.shape),
                     list(sharding.shard_shape(x.shape)),
                     len(sharding.device_set)))
      jax.debug.inspect_array_sharding(x, callback=record)

    def run(num_devices, workdir):
      mesh = training.make_mesh(num_devices)
      f_graphdef, f_state = skeleton.initial_state(task.make_f, config.f)
      f_apply = skeleton.apply_fn(f_graphdef)

      def forward(model, x, key):
        inspect('f_train_batch', x)
        return model(x)

      f_state = training.fit(
          skeleton.f_update(config, dataclasses.replace(task, f_forward=forward),
                            f_graphdef, mesh),
          f_state, train, rng=jax.random.key(1), num_steps=3,
          workdir=workdir, name='f', log_every=3, checkpoint_every=3,
          mesh=mesh, tensorboard=False)

      def f_inspected(params, x):
        inspect('lan_f_input', x)
        return f_apply(params, x)

      lan_graphdef, lan_state = skeleton.initial_state(task.make_lan,
                                                       config.lan)
      lan_init = [np.asarray(v).tolist()
                  for v in jax.tree.leaves(lan_state['params'])]
      options = {**skeleton.lan_options(config.lan),
                 'num_samples': num_samples}
      lan_state = training.fit(
          training.lan_update(
              lan_graphdef, skeleton.optimizer(config.lan), f_inspected,
              task.lan_batch, mesh=mesh, **options),
          lan_state, skeleton.lan_data(task, f_state['params']),
          rng=jax.random.key(2), num_steps=3, workdir=workdir, name='lan',
          log_every=3, checkpoint_every=3, mesh=mesh, tensorboard=False)
      leaves = lambda s: [np.asarray(v).tolist()
                          for v in jax.tree.leaves(s['params'])]
      placed = jax.tree.leaves(lan_state['params'])[0].sharding
      return {'f': leaves(f_state), 'lan': leaves(lan_state),
              'lan_init': lan_init,
              'params_replicated': [placed.is_fully_replicated,
                                    len(placed.device_set)]}

    out = {}
    for n in (1, 8):
      seen.clear()
      out[n] = run(n, tempfile.mkdtemp())
      out[n]['seen'] = list(seen)
    print('RESULT ' + json.dumps(out))
''')


@pytest.fixture(scope='module')
def sharded_run():
  env = subprocess_env(XLA_FLAGS='--xla_force_host_platform_device_count=8',
                       JAX_PLATFORMS='cpu')
  proc = subprocess.run([sys.executable, '-c', _SCRIPT], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith('RESULT ')][-1]
  return {int(k): v for k, v in json.loads(line[len('RESULT '):]).items()}


@pytest.mark.xdist_group('test_sharding.sharded_run')  # the fixture runs once
def test_batch_is_split_across_the_8_devices(sharded_run):
  seen = sharded_run[8]['seen']
  roles = {role for role, *_ in seen}
  assert roles == {'f_train_batch', 'lan_f_input'}, seen
  for role, shape, shard, devices in seen:
    assert devices == 8, (role, shape, shard)
    # Each device holds 1/8 of the batch (of B clean inputs, or of the
    # B * K corrupted ones): the work is split, not replicated.
    assert shard[0] * 8 == shape[0], (role, shape, shard)
    assert shard[1:] == shape[1:], (role, shape, shard)
  batch_sizes = sorted({shape[0] for role, shape, *_ in seen
                        if role == 'lan_f_input'})
  assert batch_sizes == [32, 32 * 3], seen  # F(x) and F(x~) for K = 3


@pytest.mark.xdist_group('test_sharding.sharded_run')  # the fixture runs once
def test_one_device_is_not_split(sharded_run):
  for role, shape, shard, devices in sharded_run[1]['seen']:
    assert devices == 1 and shard == shape, (role, shape, shard)


@pytest.mark.xdist_group('test_sharding.sharded_run')  # the fixture runs once
def test_sharded_training_gives_the_one_device_parameters(sharded_run):
  one, eight = sharded_run[1], sharded_run[8]
  assert eight['params_replicated'] == [True, 8]  # on every device
  for part in ('f', 'lan'):
    assert len(one[part]) == len(eight[part])
    for a, b in zip(one[part], eight[part]):
      np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4,
                                 atol=2e-6)
  # And they trained: A's parameters moved by several Adam steps.
  moved = max(np.abs(np.asarray(a) - np.asarray(b)).max()
              for a, b in zip(one['lan'], one['lan_init']))
  assert moved > 1e-3
