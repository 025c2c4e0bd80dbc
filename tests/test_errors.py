"""Bad input stops at once, before the first step, with a message that says what to fix.

One test per case; each checks the message names the problem and the fix.
"""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from absl import flags
from flax import nnx
from jax.experimental import checkify
from ml_collections import config_flags

import lanjax
from conftest import ROOT, load_config, subprocess_env
from lanjax import config as config_lib
from lanjax import training
from lanjax.data import tfds_data
from lanjax.models import LatentAttentionNetwork
from lanjax.noise import BootstrapNoise, ConstantNoise

# ml_collections loads config files with a deprecated importlib call.
pytestmark = pytest.mark.filterwarnings(
    'ignore:the load_module:DeprecationWarning')

CONFIG = str(ROOT / 'configs' / 'translated_mnist.py')


def _quick():
  return load_config('translated_mnist', 'quick')


# ----------------------------------------------------------------------------
# Config.


def _parse(*overrides):
  """Parses ``--config=<quick> *overrides`` as train.py does."""
  argv = ['train.py', f'--config={CONFIG}:quick', *overrides]
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file('config', CONFIG, flag_values=fv,
                                  lock_config=True, sys_argv=argv)
  config_lib.parse_flags(argv, flag_values=fv)
  return fv['config'].value


def test_config_override_is_applied():
  assert _parse('--config.lan.beta=3').lan.beta == 3.0


def test_unknown_config_key_names_it_and_lists_valid_keys():
  with pytest.raises(SystemExit) as e:
    _parse('--config.lan.bta=3')
  msg = str(e.value.code)
  assert 'Unknown config field config.lan.bta' in msg
  assert 'Did you mean config.lan.beta?' in msg
  # Every field of the section, sorted (a hand-picked few must appear too).
  fields = sorted(_parse().lan.keys())
  assert {'batch_size', 'beta', 'hidden', 'noise', 'num_steps'} <= set(fields)
  assert f'Valid fields of config.lan: {", ".join(fields)}.' in msg


def test_unknown_config_section_lists_top_level_keys():
  with pytest.raises(SystemExit) as e:
    _parse('--config.lna.beta=3')
  msg = str(e.value.code)
  assert 'Unknown config field config.lna' in msg and 'config.lan?' in msg
  assert 'Valid fields of config: ' in msg and 'checkpoint_every' in msg


def test_unknown_key_from_the_command_line_prints_no_traceback():
  proc = subprocess.run(
      [sys.executable, 'train.py', '--config',
       'configs/translated_mnist.py:quick', '--config.lan.bta=3',
       '--workdir', '/nonexistent/never/created'],
      cwd=ROOT, env=subprocess_env(), capture_output=True, text=True,
      timeout=120)
  assert proc.returncode == 1
  assert 'Traceback' not in proc.stderr
  assert 'Did you mean config.lan.beta?' in proc.stderr
  assert 'Valid fields of config.lan:' in proc.stderr


def test_wrong_type_on_the_command_line_names_flag_and_value():
  with pytest.raises(SystemExit) as e:
    _parse('--config.lan.num_samples=2.5')
  msg = str(e.value.code)
  assert '--config.lan.num_samples=2.5' in msg and "'2.5'" in msg


def test_wrong_type_in_code_names_field_and_type():
  config = _quick()
  with config.unlocked():
    config.lan = ml_collections.ConfigDict(
        {**config.lan.to_dict(), 'num_samples': 2.5})
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(config)
  assert 'config.lan.num_samples' in str(e.value)
  assert 'int >= 1, got 2.5 (float)' in str(e.value)


@pytest.mark.parametrize('beta', [0.0, -1.0])
def test_nonpositive_beta(beta):
  config = _quick()
  config.lan.beta = beta
  with pytest.raises(ValueError, match=r'config.lan.beta must be a number > 0 '
                     rf'\(it weighs the mean mask, eq. 3\), got {beta}'):
    config_lib.validate(config)


def test_num_samples_below_one():
  config = _quick()
  config.lan.num_samples = 0
  with pytest.raises(ValueError, match=r'config.lan.num_samples \(K, noise '
                     r'samples per example\) must be an int >= 1, got 0'):
    config_lib.validate(config)


def test_invalid_config_from_the_command_line_exits_with_message():
  proc = subprocess.run(
      [sys.executable, 'train.py', '--config',
       'configs/translated_mnist.py:quick', '--config.lan.beta=0',
       '--workdir', '/nonexistent/never/created'],
      cwd=ROOT, env=subprocess_env(), capture_output=True, text=True,
      timeout=120)
  assert proc.returncode == 1
  assert 'Traceback' not in proc.stderr
  assert 'Invalid config: config.lan.beta must be a number > 0' in proc.stderr


def test_batch_size_not_divisible_over_devices(monkeypatch):
  monkeypatch.setattr(jax, 'device_count', lambda: 3)
  config = _quick()  # batch size 128, all (3) devices
  with pytest.raises(ValueError, match='config.f.batch_size 128 does not '
                     'divide over the 3 devices; use a multiple of 3'):
    config_lib.validate(config)


def test_check_divisible_names_mesh_size():
  class Mesh:  # only .size is read
    size = 3
  with pytest.raises(ValueError, match='batch size 10 does not divide over '
                     'the 3 devices of the mesh; use a multiple of 3'):
    training.check_divisible(10, Mesh())


# ----------------------------------------------------------------------------
# Shapes.


def _f(x):
  return x.reshape(x.shape[0], -1) @ jnp.ones((x[0].size, 3))


def test_mask_that_does_not_broadcast_to_input():
  x = jnp.ones((2, 4, 4, 3))
  a = lambda x: jnp.full((2, 4, 4, 2), 0.5)  # 2 channels vs 3
  with pytest.raises(ValueError, match=r'mask A\(x\) of shape \(2, 4, 4, 2\) '
                     r'does not broadcast to the input x of shape '
                     r'\(2, 4, 4, 3\).*be 1'):
    lanjax.check_lan_setup(_f, a, x, ConstantNoise(0.))


def test_one_channel_mask_is_accepted():
  x = jnp.ones((2, 4, 4, 3))
  shapes = lanjax.check_lan_setup(
      _f, lambda x: jnp.full((2, 4, 4, 1), 0.5), x, ConstantNoise(0.),
      num_samples=5)
  assert shapes['noise'].shape == (5, 2, 4, 4, 3)
  assert shapes['fidelity_loss'].shape == (2,)


def test_integer_mask_is_rejected():
  x = jnp.ones((2, 4))
  with pytest.raises(ValueError, match='mask of dtype int32; it must be a '
                     'floating-point mask in'):
    lanjax.check_lan_setup(_f, lambda x: jnp.ones(x.shape, jnp.int32), x,
                           ConstantNoise(0.))


def test_f_output_shape_changes_between_x_and_corrupted_x():
  # Integer inputs become float when corrupted; this F answers differently.
  def f(z):
    k = 2 if jnp.issubdtype(z.dtype, jnp.integer) else 3
    return jnp.ones((z.shape[0], k))
  x = jnp.ones((2, 4), jnp.int32)
  with pytest.raises(ValueError, match=r'F returns shape \(2, 3\) on the '
                     r'corrupted input but \(2, 2\) on the clean input'):
    lanjax.check_lan_setup(f, lambda x: jnp.full(x.shape, 0.5), x,
                           ConstantNoise(0.))


def test_f_without_batch_axis():
  with pytest.raises(ValueError, match='one output per example'):
    lanjax.check_lan_setup(lambda x: x.sum(), lambda x: x * 0., jnp.ones((2, 4)),
                           ConstantNoise(0.))


def test_noise_pool_examples_of_another_shape():
  noise = BootstrapNoise(jnp.ones((10, 5)))
  with pytest.raises(ValueError, match=r'Bootstrap noise examples have shape '
                     r'\(5,\) but the input examples have shape \(4,\)'):
    lanjax.check_lan_setup(_f, lambda x: x * 0., jnp.ones((2, 4)), noise)
  # A pool of the right shape that its transform reshapes: the message says
  # the transform made the shape.
  grow = BootstrapNoise(jnp.ones((10, 4)),
                        transform=lambda key, d: jnp.pad(d, ((0, 0),) * 2
                                                         + ((0, 1),)))
  with pytest.raises(ValueError, match=r'Bootstrap noise examples after its '
                     r'transform have shape \(5,\)'):
    grow.sample(jax.random.key(0), jnp.ones((2, 4)), 1)


def test_empty_noise_pool():
  with pytest.raises(ValueError, match=r'noise pool is empty \(shape '
                     r'\(0, 4\)\); it must hold at least one training example'):
    BootstrapNoise(np.zeros((0, 4)))
  with pytest.raises(ValueError, match='empty'):
    lanjax.make_noise('bootstrap', pool=[])


def test_noise_pytree_survives_tree_utilities():
  # Placeholders as leaves must not trip the empty-pool check.
  noise = BootstrapNoise(jnp.ones((3, 2)))
  assert jax.tree.map(lambda _: None, noise).pool is None


def test_noise_array_of_wrong_shape():
  with pytest.raises(ValueError, match=r'noise must be \(K, \*x.shape\)'):
    lanjax.check_lan_setup(_f, lambda x: x * 0., jnp.ones((2, 4)),
                           jnp.zeros((3, 2, 5)))


def _lan_fit(tmp_path, x, a_out_shape=None, noise=None):
  """fit() of a LAN on a linear F; A's mask has ``a_out_shape`` per example."""
  d = x.shape[1:]
  a = LatentAttentionNetwork(d, (4,), mask_shape=a_out_shape or d,
                             rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(a, nnx.Param)
  tx = optax.adam(1e-3)
  f_apply = lambda p, z: z.reshape(z.shape[0], -1) @ p
  update = training.lan_update(graphdef, tx, f_apply, lambda data, k: data['x'],
                               beta=1., num_samples=2)
  data = {'x': x, 'f_params': jnp.ones((int(np.prod(d)), 3)),
          'noise': noise or ConstantNoise(0.)}
  return training.fit(update, training.init_state(params, tx), data,
                      rng=jax.random.key(0), num_steps=3, workdir=str(tmp_path),
                      name='lan', log_every=1, checkpoint_every=1,
                      tensorboard=False)


def test_fit_reports_shape_errors_before_the_first_step(tmp_path):
  with pytest.raises(ValueError) as e:
    _lan_fit(tmp_path, jnp.ones((2, 4, 3)), a_out_shape=(4, 2))
  assert 'does not broadcast to the input' in str(e.value)
  assert any('before the first step' in n for n in e.value.__notes__)
  assert not os.listdir(tmp_path / 'checkpoints' / 'lan')  # nothing ran
  assert not (tmp_path / 'metrics_lan.jsonl').exists()


def test_fit_reports_noise_of_wrong_shape_before_the_first_step(tmp_path):
  with pytest.raises(ValueError, match='Bootstrap noise examples have shape'):
    _lan_fit(tmp_path, jnp.ones((2, 4)),
             noise=BootstrapNoise(jnp.ones((10, 5))))
  assert not os.listdir(tmp_path / 'checkpoints' / 'lan')


def test_fit_rejects_update_that_changes_the_state(tmp_path):
  tx = optax.sgd(0.1)
  state = training.init_state({'w': jnp.zeros(3)}, tx)

  def update(state, data, key):
    state = {**state, 'params': {'w': jnp.zeros(4)}}
    return state, {'loss': jnp.float32(0.), 'finite': jnp.float32(1.)}

  with pytest.raises(ValueError, match=r"returns a state that differs from "
                     r"the one it is given \(params/w: \(\(3,\), 'float32'\) "
                     r"-> \(\(4,\), 'float32'\)\)"):
    training.fit(update, state, {}, rng=jax.random.key(0), num_steps=2,
                 workdir=str(tmp_path), name='bad', tensorboard=False)


# ----------------------------------------------------------------------------
# Values.


def test_check_finite_names_leaf_count_and_first_index():
  data = {'x': np.array([[1., 2.], [np.nan, np.inf]], np.float32),
          'y': np.array([0, 1])}
  with pytest.raises(ValueError) as e:
    lanjax.check_finite(data, name='batch')
  msg = str(e.value)
  assert "batch['x'] holds 1 NaN and 1 infinite values out of 4" in msg
  assert 'first at index (1, 0)' in msg and 'nan_to_num' in msg


def test_check_finite_accepts_finite_and_integer_data():
  lanjax.check_finite({'x': jnp.ones(3), 'y': np.arange(3), 'z': 2.0})


def test_check_finite_inside_jit_with_checkify():
  @jax.jit
  def f(x):
    lanjax.check_finite(x, name='x')
    return x * 2

  err, _ = checkify.checkify(f)(jnp.array([1., jnp.inf]))
  with pytest.raises(Exception, match='x holds NaN or infinite values'):
    err.throw()
  err, out = checkify.checkify(f)(jnp.array([1., 2.]))
  err.throw()  # no error
  np.testing.assert_array_equal(out, [2., 4.])


def test_check_range_reports_min_max_and_hint():
  images = np.array([[0., 0.5], [255., 1.]], np.float32)
  with pytest.raises(ValueError) as e:
    lanjax.check_range(images, low=0., high=1., name='images',
                       hint='Divide uint8 pixels by 255.')
  msg = str(e.value)
  assert 'images must lie in [0.0, 1.0] but has 1 of 4 values outside it' in msg
  assert 'max 255.0' in msg and 'Divide uint8 pixels by 255.' in msg


def test_check_range_reports_nan_as_nan():
  with pytest.raises(ValueError, match='holds 1 NaN'):
    lanjax.check_range(np.array([0.5, np.nan]), low=0., high=1.)


def test_fit_rejects_nan_data_before_the_first_step(tmp_path):
  with pytest.raises(ValueError, match=r"\[lan\] data\['x'\] holds 2 NaN"):
    _lan_fit(tmp_path, jnp.ones((2, 4)).at[0, :2].set(jnp.nan))
  assert not os.listdir(tmp_path / 'checkpoints' / 'lan')


def test_experiment_checks_image_range(shared_tfds_dir):
  from lanjax.experiments import translated_mnist  # pylint: disable=g-import-not-at-top
  config = _quick()
  config.data.data_dir = shared_tfds_dir
  config.data.train_limit = 50
  config.data.test_limit = 50
  config.data.value_range = (0.0, 0.5)  # real pixels reach 1.0
  with pytest.raises(ValueError) as e:
    translated_mnist.load_mnist(config)
  msg = str(e.value)
  assert 'mnist train images must lie in [0.0, 0.5]' in msg
  assert 'config.data.value_range' in msg


# ----------------------------------------------------------------------------
# Data.


def test_missing_dataset_names_dataset_dir_and_fix(tmp_path):
  with pytest.raises(tfds_data.DatasetNotFoundError) as e:
    tfds_data.data_source('mnist', 'train', data_dir=str(tmp_path))
  msg = str(e.value)
  assert f"'mnist' is not prepared in the data dir {tmp_path}" in msg
  assert 'export TFDS_DATA_DIR=' in msg
  assert '--config.data.manual_dir=' in msg
  assert '--config.data.download=True' in msg


def test_missing_dataset_via_environment_variable(tmp_path, monkeypatch):
  monkeypatch.setenv('TFDS_DATA_DIR', str(tmp_path))
  with pytest.raises(tfds_data.DatasetNotFoundError,
                     match=f'not prepared in the data dir {tmp_path}'):
    tfds_data.load_arrays('mnist', 'train', ('image',))


def test_missing_manual_dir_fails_at_once(tmp_path):
  manual = tmp_path / 'raw' / 'mnist'
  with pytest.raises(tfds_data.DatasetNotFoundError) as e:
    tfds_data.data_source('mnist', 'train', data_dir=str(tmp_path / 'tfds'),
                          manual_dir=str(manual))
  assert f'The manual dir {manual} does not exist.' in str(e.value)
  manual.mkdir(parents=True)
  with pytest.raises(tfds_data.DatasetNotFoundError,
                     match=f'The manual dir {manual} is empty'):
    tfds_data.data_source('mnist', 'train', data_dir=str(tmp_path / 'tfds'),
                          manual_dir=str(manual))


def _f_state(width):
  """The training state of a small F with a hidden layer of ``width``."""
  f = nnx.Sequential(nnx.Linear(4, width, rngs=nnx.Rngs(0)),
                     nnx.Linear(width, 3, rngs=nnx.Rngs(1)))
  _, params = nnx.split(f, nnx.Param)
  return training.init_state(params, optax.adam(1e-3))


def test_missing_f_checkpoint_names_what_and_where(tmp_path):
  where = tmp_path / 'run' / 'checkpoints' / 'f'
  with pytest.raises(FileNotFoundError) as e:
    training.load_state(str(where), _f_state(10), what='F')
  msg = str(e.value)
  assert f'No checkpoint of F at {where}' in msg
  assert 'Train it first' in msg and '--workdir' in msg
  where.mkdir(parents=True)
  with pytest.raises(FileNotFoundError, match=f'{where} holds no checkpoint '
                     'of F'):
    training.load_state(str(where), _f_state(10), what='F')


def test_mismatched_f_checkpoint_names_expected_shapes(tmp_path):
  where = str(tmp_path / 'checkpoints' / 'f')
  manager = training.checkpoint_manager(where)
  manager.save(60, args=ocp.args.StandardSave(_f_state(10)))
  manager.wait_until_finished()
  manager.close()
  with pytest.raises(training.CheckpointMismatchError) as e:
    training.load_state(where, _f_state(8), what='F')
  msg = str(e.value)
  assert isinstance(e.value, ValueError)
  assert f'The checkpoint of F at {where} (step 60) does not match' in msg
  assert 'params/layers/0/bias/value: stored float32[10], expected float32[8]' \
      in msg
  assert 'use the config that wrote it, or another --workdir' in msg


def test_resuming_with_another_architecture_stops(tmp_path):
  where = tmp_path / 'checkpoints' / 'f'
  manager = training.checkpoint_manager(str(where))
  manager.save(10, args=ocp.args.StandardSave(_f_state(10)))
  manager.wait_until_finished()
  manager.close()
  with pytest.raises(training.CheckpointMismatchError, match='does not match'):
    training.fit(lambda s, d, k: (s, {}), _f_state(8), {},
                 rng=jax.random.key(0), num_steps=20, workdir=str(tmp_path),
                 name='f', tensorboard=False)
  assert os.listdir(where) == ['10']  # nothing deleted, nothing overwritten


# ----------------------------------------------------------------------------
# The pure API checks its Python-level arguments before tracing.


def _api_problem():
  f = lambda x: x @ jnp.ones((4, 3))
  x = jnp.ones((2, 4))
  mask = jnp.full((2, 4), 0.5)
  eta = ConstantNoise(0.).sample(jax.random.key(0), x, 3)
  return f, x, mask, eta


@pytest.mark.parametrize('beta, error, match', [
    ('1', TypeError, r'beta must be a number, got .1. \(str\)'),
    (True, TypeError, r'beta must be a number, got True \(bool\)'),
    ([1.], TypeError, r'beta must be a number'),
    (jnp.ones(2), TypeError, r'beta must be a scalar, got an array of shape'),
    (-1., ValueError, r'beta must be >= 0, got -1.0. .*corruption is '
                      r'penalised'),
    (float('nan'), ValueError, r'beta must be finite'),
])
def test_lan_loss_checks_beta(beta, error, match):
  f, x, mask, eta = _api_problem()
  with pytest.raises(error, match=match):
    lanjax.lan_loss(f, x, mask, eta, beta=beta)


def test_lan_loss_accepts_beta_zero_and_traced_beta():
  f, x, mask, eta = _api_problem()
  lanjax.lan_loss(f, x, mask, eta, beta=0.)
  jax.jit(lambda b: lanjax.lan_loss(f, x, mask, eta, beta=b))(1.)


def test_containers_where_arrays_are_expected():
  f, x, mask, eta = _api_problem()
  with pytest.raises(TypeError, match=r'x must be an array, got a list; pass '
                     r'an array instead \(e.g. jnp.asarray'):
    lanjax.lan_terms(f, x.tolist(), mask, eta)
  with pytest.raises(TypeError, match=r'mask must be an array, got a dict'):
    lanjax.corrupt(x, {'m': mask}, x)
  with pytest.raises(TypeError, match=r'x \(the batch to draw noise for\) '
                     r'must be an array, got a list'):
    BootstrapNoise(jnp.ones((5, 4))).sample(jax.random.key(0), [[1.] * 4], 2)
  with pytest.raises(TypeError, match='ConstantNoise.value must be a number'):
    ConstantNoise('0').sample(jax.random.key(0), x, 2)
  with pytest.raises(TypeError, match='f .the black box F. must be callable'):
    lanjax.lan_loss(None, x, mask, eta, beta=1.)


def test_empty_batch_is_refused_before_tracing():
  f, _, _, _ = _api_problem()
  x = jnp.ones((0, 4))
  with pytest.raises(ValueError, match=r'x is an empty batch \(shape \(0, 4\)\)'
                     r'.*would be NaN. Pass at least one example'):
    lanjax.lan_loss(f, x, jnp.ones((0, 4)), jnp.ones((3, 0, 4)), beta=1.)
  with pytest.raises(ValueError, match='empty batch'):
    BootstrapNoise(jnp.ones((5, 4))).sample(jax.random.key(0), x, 2)


@pytest.mark.parametrize('bad', [1.5, -0.1])
def test_concrete_mask_outside_unit_interval_is_refused(bad):
  f, x, mask, eta = _api_problem()
  mask = mask.at[0, 0].set(bad)
  with pytest.raises(ValueError, match=r'The mask A\(x\) must lie in \[0.0, '
                     r'1.0\] but has 1 of 8 values outside it.*sigmoid'):
    lanjax.lan_loss(f, x, mask, eta, beta=1.)
  with pytest.raises(ValueError, match=r'must lie in \[0.0, 1.0\]'):
    lanjax.corrupt(x, mask, jnp.zeros_like(x))


def test_traced_mask_checked_mode_with_checkify():
  f, x, mask, eta = _api_problem()

  def loss(m):
    lanjax.check_range(m, low=0., high=1., name='mask')
    return lanjax.lan_loss(f, x, m, eta, beta=1.)

  # Traced, the mask is not checked by lan_loss itself (documented).
  jax.jit(lambda m: lanjax.lan_loss(f, x, m, eta, beta=1.))(mask + 1.)
  checked = jax.jit(checkify.checkify(loss))
  err, _ = checked(mask)
  err.throw()  # in range: no error
  err, _ = checked(mask.at[0, 0].set(2.))
  with pytest.raises(checkify.JaxRuntimeError, match='outside'):
    err.throw()


def test_f_output_that_is_not_arrays():
  _, x, mask, eta = _api_problem()
  with pytest.raises(TypeError, match=r'F returned str on the clean input x; '
                     r'F must return an array \(B, \*l\) or a pytree'):
    lanjax.lan_loss(lambda z: 'logits', x, mask, eta, beta=1.)
  with pytest.raises(TypeError, match='F returned NoneType'):
    lanjax.lan_loss(lambda z: None, x, mask, eta, beta=1.)
  # F that returns arrays on x but not on the corrupted inputs: named too.
  with pytest.raises(TypeError, match='F returned NoneType on the corrupted '
                                      'inputs'):
    lanjax.lan_loss(lambda z: z if z.shape[0] == x.shape[0] else None, x,
                    mask, eta, beta=1.)


def test_pytree_output_of_f_sums_leafwise_losses():
  _, x, mask, eta = _api_problem()
  w1, w2 = jnp.arange(12.).reshape(4, 3) / 10, jnp.ones((4, 5))
  f1, f2 = lambda z: z @ w1, lambda z: z @ w2
  both = lambda z: {'a': f1(z), 'b': f2(z)}
  got = lanjax.lan_loss(both, x * jnp.arange(1., 3.)[:, None], mask, eta,
                        beta=0.5, reduction='none')
  xs = x * jnp.arange(1., 3.)[:, None]
  want = (lanjax.lan_loss(f1, xs, mask, eta, beta=0.5, reduction='none')
          + lanjax.lan_loss(f2, xs, mask, eta, beta=0., reduction='none'))
  np.testing.assert_allclose(got, want, rtol=1e-6)
  g = jax.grad(lambda m: lanjax.lan_loss(both, xs, m, eta, beta=0.5))(mask)
  assert np.all(np.isfinite(g))


def test_metrics_name_mismatched_maps_and_regions():
  from lanjax import metrics  # pylint: disable=g-import-not-at-top
  score = jnp.ones((2, 4, 4, 1))
  with pytest.raises(ValueError, match='region has shape .*one region per'):
    metrics.mass_in_region(score, jnp.ones((2, 5, 5), bool))
  with pytest.raises(ValueError, match='pointing_game.*region has shape'):
    metrics.pointing_game(score, jnp.ones((3, 4, 4), bool))
  with pytest.raises(TypeError, match='mass_in_region: region must be an '
                                      'array'):
    metrics.mass_in_region(score, [[True]])
  with pytest.raises(ValueError, match='pointing_game: score is an empty batch'):
    metrics.pointing_game(jnp.ones((0, 4)), jnp.ones((0, 4), bool))
  with pytest.raises(ValueError, match=r'mass_in_region: score has shape \(\) '
                     r'but needs at least 1 axes \(a batch'):
    metrics.mass_in_region(jnp.float32(1.0), jnp.ones((1,), bool))
  # A region on the map's grid without its channel axis is fine.
  assert metrics.mass_in_region(score, jnp.ones((2, 4, 4), bool)).shape == (2,)
  for bad in (0, True, 2.5):
    with pytest.raises(ValueError, match='num_steps must be a positive int'):
      metrics.deletion_curve(lambda x: x, jnp.ones((2, 3)),
                             jnp.zeros((2, 3), jnp.int32), num_steps=bad)
  with pytest.raises(ValueError, match='one order .* per example'):
    metrics.deletion_curve(lambda x: x, jnp.ones((2, 3)),
                           jnp.zeros((3, 3), jnp.int32), num_steps=2)
  with pytest.raises(ValueError, match=r'deletion_curve: x has shape \(2,\) '
                                       'but needs at least 2 axes'):
    metrics.deletion_curve(lambda x: x, jnp.ones((2,)),
                           jnp.zeros((2, 1), jnp.int32), num_steps=2)
  with pytest.raises(ValueError, match='deletion_curve: order is an empty '
                                       'batch'):
    metrics.deletion_curve(lambda x: x, jnp.ones((2, 3)),
                           jnp.zeros((0, 3), jnp.int32), num_steps=2)
