"""Every config accepts every override the README documents, and validates."""

import re

import pytest
from absl import flags
from ml_collections import config_flags

from conftest import ROOT, load_config
from lanjax import config as config_lib

CONFIGS = sorted(p.stem for p in (ROOT / 'configs').glob('*.py')
                 if not p.stem.startswith('_'))
VARIANTS = (None, 'quick', 'paper', 'gpu')


def documented_overrides() -> list[str]:
  """``--config.a.b=value`` flags of the README (placeholders made concrete)."""
  text = (ROOT / 'README.md').read_text()
  found = sorted(set(re.findall(r'--config\.[a-z_][a-z_.]*=[^\s`\'")]+', text)))
  concrete = {'N': '4', 'M': '256'}
  flags_ = {}
  for f in found:  # one value per field: a later flag would override it
    flags_.setdefault(f.split('=', 1)[0],
                      re.sub(r'=(N|M)$', lambda m: '=' + concrete[m.group(1)],
                             f))
  return sorted(flags_.values())


def parse(name, variant, overrides):
  spec = str(ROOT / 'configs' / f'{name}.py') + (f':{variant}' if variant
                                                   else '')
  argv = ['prog', f'--config={spec}', *overrides]
  fv = flags.FlagValues()
  # The override flags are defined from the command line, as the CLIs do.
  config_flags.DEFINE_config_file('config', spec, flag_values=fv,
                                  lock_config=True, sys_argv=argv)
  fv(argv)
  return fv.config


def test_the_readme_documents_overrides():
  flags_ = documented_overrides()
  # The fields the README promises for every experiment.
  for field in ('lan.beta', 'lan.num_samples', 'distributed',
                'lan.chunk_memory_mb', 'lan.chunk_size', 'data.data_dir'):
    assert any(f.startswith(f'--config.{field}=') for f in flags_), field


@pytest.mark.parametrize('variant', VARIANTS)
@pytest.mark.parametrize('name', CONFIGS)
def test_every_documented_override_parses_for_every_config(name, variant):
  overrides = documented_overrides()
  config = parse(name, variant, overrides)
  for flag in overrides:
    path, value = flag[len('--config.'):].split('=', 1)
    node = config
    for key in path.split('.'):
      node = node[key]
    assert str(node).lower() == value.lower() or (
        isinstance(node, float) and node == float(value)), flag
  config.unlock()
  config.distributed = False  # validate() needs no multi-host here
  config_lib.validate(config)


@pytest.mark.parametrize('name', CONFIGS)
def test_every_config_extends_the_base_config(name):
  base = config_lib.base_config(name)
  config = load_config(name)

  def paths(node, prefix=''):
    for k, v in node.items():
      if hasattr(v, 'items'):
        yield from paths(v, f'{prefix}{k}.')
      else:
        yield f'{prefix}{k}'

  missing = set(paths(base)) - set(paths(config))
  assert not missing, f'configs/{name}.py lacks {sorted(missing)}'
  assert config.experiment == name


@pytest.mark.parametrize('name', CONFIGS)
def test_gpu_variant_trades_steps_for_batch(name):
  """The ``gpu`` variant: 4x batches over a quarter of the steps (as many
  examples), logs at the same examples, several steps per dispatch."""
  base, gpu = load_config(name), load_config(name, 'gpu')
  for part in ('f', 'lan'):
    assert gpu[part].batch_size == 4 * base[part].batch_size
    assert gpu[part].num_steps == -(-base[part].num_steps // 4)
    assert gpu[part].learning_rate == pytest.approx(
        2 * base[part].learning_rate)
  assert gpu.log_every == max(1, base.log_every // 4)
  assert base.steps_per_dispatch > 1 and gpu.steps_per_dispatch > 1
  assert gpu.log_every % gpu.steps_per_dispatch == 0


def test_newsgroups_refuses_an_empty_comparison_before_training():
  # Its claims are measured on the compared documents: 0 would fail after
  # training with a bare numpy error; validate() names the field instead.
  config = load_config('newsgroups', 'quick')
  config.distributed = False
  config.eval.compare_examples = 0
  with pytest.raises(ValueError, match='compare_examples must be an int >= 1'):
    config_lib.validate(config)
  config.eval.compare_examples = 8
  config_lib.validate(config)


def test_cosine_lr_schedule_decays_to_zero_over_the_steps():
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from lanjax.experiments import skeleton  # pylint: disable=g-import-not-at-top
  part = load_config('translated_mnist').f
  part.learning_rate, part.num_steps = 0.1, 10
  params = {'w': jnp.zeros(())}

  def step_sizes(schedule):
    part.lr_schedule = schedule
    tx = skeleton.optimizer(part)
    state, sizes = tx.init(params), []
    for _ in range(part.num_steps):
      updates, state = tx.update({'w': jnp.ones(())}, state, params)
      sizes.append(abs(float(updates['w'])))
    return sizes

  constant, cosine = step_sizes('constant'), step_sizes('cosine')
  assert constant == pytest.approx([0.1] * 10, rel=1e-3)  # Adam: lr per step
  assert cosine[0] == pytest.approx(0.1, rel=1e-3)
  assert all(a > b for a, b in zip(cosine, cosine[1:]))
  assert cosine[-1] < 0.01
  config = load_config('translated_mnist')
  config.f.lr_schedule = 'linear'
  with pytest.raises(config_lib.ConfigError, match='lr_schedule'):
    config_lib.validate(config)
