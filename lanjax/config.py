"""Config checks and records: fail before the first step, say what to fix."""

from __future__ import annotations

import difflib
import json
import os
import re
from typing import Optional, Sequence

import ml_collections

from lanjax import io


def base_config(experiment: str, *, dataset: str = '',
                manual_dir: str = '') -> ml_collections.ConfigDict:
  """The fields every experiment's config has, with their defaults.

  Every ``configs/<experiment>.py`` starts from this and sets or adds its own
  fields, so the command-line overrides the README documents (``--config.seed``,
  ``--config.num_devices``, ``--config.distributed``, ``--config.lan.beta``,
  ``--config.lan.num_samples``, ``--config.lan.chunk_size``,
  ``--config.lan.chunk_memory_mb``, ``--config.lan.cpu_max_inputs``,
  ``--config.f.init_from``, ``--config.data.data_dir``, ...) exist for every
  experiment and act the same way (`lanjax.experiments.skeleton.lan_options`).

  Args:
    experiment: the experiment module's name (``lanjax.experiments.<name>``).
    dataset: the TFDS name of its dataset.
    manual_dir: where raw files to prepare the dataset from may be.
  """
  c = ml_collections.ConfigDict()
  c.experiment = experiment
  c.seed = 0
  c.num_devices = 0  # 0: all devices (data parallel over the batch)
  c.distributed = False  # True: jax.distributed.initialize() (multi-host)
  c.log_every = 500
  c.checkpoint_every = 2_000
  # Training steps per call of the compiled step (`training.fit`; a call
  # still stops at every log, checkpoint and evaluation step). More than one
  # pays on every backend: on the 2-core CPU (2026-12-07, 100 vs 1, median
  # steps/s of `fit`) translated MNIST's F step ran 1.11x and its LAN step
  # 1.33x faster, Pong's LAN step 1.44x, CIFAR's F step 1.24x; GPUs and TPUs
  # spend as long launching a small step as running it (`gpu_variant`).
  c.steps_per_dispatch = 100
  c.evaluate_after_train = True

  c.data = ml_collections.ConfigDict()
  c.data.name = dataset
  c.data.data_dir = ''  # '' -> $TFDS_DATA_DIR -> ~/tensorflow_datasets
  # Raw files to prepare from; used only if the dataset is not prepared yet
  # and the directory holds them (else: download, where there is internet).
  c.data.manual_dir = manual_dir
  c.data.download = True
  c.data.train_limit = 0  # 0: all examples
  c.data.test_limit = 0

  c.f = ml_collections.ConfigDict()  # the black box F
  c.f.learning_rate = 1e-3
  c.f.lr_schedule = 'constant'  # or 'cosine': decayed to 0 over num_steps
  c.f.batch_size = 128
  c.f.num_steps = 10_000
  c.f.eval_every = 2_000
  c.f.init_from = ''  # a previous run's workdir: explain its F, don't train one

  c.lan = ml_collections.ConfigDict()  # the LAN A and eq. (3)
  c.lan.arch = 'mlp'  # 'mlp': FC layers c.lan.hidden; 'conv': images only
  c.lan.hidden = (100,)
  c.lan.conv_features = (16, 32, 32)  # arch 'conv': strided convs
  c.lan.conv_kernel = 5
  c.lan.learning_rate = 1e-3
  c.lan.lr_schedule = 'constant'  # or 'cosine'
  c.lan.beta = 5.0  # fixed (the paper), or the start when adapted
  # >0: adapt beta by dual ascent so that the mean L_F stays at this budget
  # (`training.lan_update`); 0: fixed beta.
  c.lan.fidelity_budget = 0.0
  c.lan.beta_learning_rate = 0.02  # dual-ascent step on log(beta)
  c.lan.noise = 'bootstrap'  # or 'constant'; SDC also 'background'
  c.lan.noise_value = 0.0  # c, for constant noise
  c.lan.num_samples = 1  # K noise samples per example
  c.lan.chunk_size = 0  # >0: at most this many noise samples at once
  c.lan.chunk_memory_mb = 0  # >0: chunk_size from this memory budget
  c.lan.cpu_max_inputs = 64  # CPU: tile K x B beyond this (0: never)
  c.lan.batch_size = 128
  c.lan.num_steps = 10_000

  c.eval = ml_collections.ConfigDict()
  # The attribution comparison (`skeleton.compare_methods`): every method on
  # the same F and the same test examples, with `lanjax.evaluation.compare`.
  c.eval.methods = ('lan', 'gradient', 'gradient_x_input', 'smoothgrad',
                    'integrated_gradients', 'occlusion', 'rise',
                    'mask_optimisation', 'random')
  c.eval.compare_examples = 100  # 0: no comparison
  c.eval.compare_batch = 50  # examples explained at once (memory)
  c.eval.curve_steps = 20  # deletion / insertion steps
  c.eval.removals = ('noise', 'blur', 'mean')  # noise: the task's own H
  c.eval.sanity_lan_steps = 1_000  # A refit on the randomised F (0: skip)
  c.eval.sanity_cascade = False  # True: every layer in turn, not just all
  c.eval.num_bootstrap = 1_000
  # Settings of each method (`lanjax.attribution`), e.g.
  # --config.eval.method_settings.occlusion.window=2.
  c.eval.method_settings = ml_collections.ConfigDict({
      'smoothgrad': {'num_samples': 50, 'sigma': 0.15},
      'integrated_gradients': {'num_steps': 50},
      'occlusion': {'window': 4, 'stride': 2},
      'rise': {'num_masks': 500, 'grid_size': 7},
      'mask_optimisation': {'num_steps': 100, 'num_samples': 8},
  })
  return c


def quick_eval(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks the attribution comparison for a ``quick`` variant (seconds)."""
  e = config.eval
  e.compare_examples = 16
  e.compare_batch = 16
  e.curve_steps = 4
  e.sanity_lan_steps = 10
  e.num_bootstrap = 100
  e.method_settings.smoothgrad.num_samples = 4
  e.method_settings.integrated_gradients.num_steps = 8
  e.method_settings.rise.num_masks = 32
  e.method_settings.mask_optimisation.num_steps = 10
  e.method_settings.mask_optimisation.num_samples = 2
  return config


def gpu_variant(config: ml_collections.ConfigDict, *, batch_scale: int = 4,
                steps_per_dispatch: int = 0) -> ml_collections.ConfigDict:
  """Sizes a config for one GPU (the ``gpu`` variant of every experiment).

  F's and A's batches ``batch_scale`` times larger, for as many examples in
  ``1 / batch_scale`` of the steps (an accelerator runs a 4x batch in about
  the time of one: the small steps of these networks are launch-bound), the
  learning rates scaled by ``sqrt(batch_scale)`` (the usual rule for Adam),
  logs, checkpoints and evaluations at the same numbers of examples, and
  ``steps_per_dispatch`` steps per call of the compiled step (0: one call
  per log interval, calls stop at every log step anyway).
  """
  s = int(batch_scale)
  for part in (config.f, config.lan):
    part.batch_size = int(part.batch_size) * s
    part.num_steps = max(1, -(-int(part.num_steps) // s))
    part.learning_rate = float(part.learning_rate) * s ** 0.5
  config.log_every = max(1, int(config.log_every) // s)
  config.checkpoint_every = max(1, int(config.checkpoint_every) // s)
  if config.f.get('eval_every', 0):
    config.f.eval_every = max(1, int(config.f.eval_every) // s)
  config.steps_per_dispatch = int(steps_per_dispatch) or config.log_every
  return config


def shared_data_dir(name: str) -> str:
  """``../shared/data/<name>`` beside the repository (raw files, offline)."""
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return os.path.normpath(os.path.join(repo, '..', 'shared', 'data', name))


class ConfigError(ValueError):
  """A config value is out of range or of the wrong type."""


def _check(cond, msg):
  if not cond:
    raise ConfigError(msg)


def _is_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def _got(v) -> str:
  return f'{v!r} ({type(v).__name__})'


def _check_window(config) -> None:
  """``config.data.window_frames``: 0, or a window of the training data that
  every batch size divides (`lanjax.training.Windows`)."""
  w = config.data.window_frames
  _check(_is_int(w) and w >= 0,
         'config.data.window_frames must be an int >= 0 (0: all training '
         f'examples in memory; > 0: read them in windows of that many), got '
         f'{_got(w)}.')
  if not w:
    return
  n = config.data.get('num_train', 0)
  _check(not n or w <= n,
         f'config.data.window_frames={w} is larger than the training data '
         f'(config.data.num_train={n}): set it to at most {n}, or to 0 to hold '
         'all of it in memory.')
  for part in ('f', 'lan'):
    if part in config and 'batch_size' in config[part]:
      b = config[part].batch_size
      _check(w % b == 0,
             f'config.data.window_frames={w} must be a multiple of '
             f'config.{part}.batch_size={b} (a window is read for '
             f'window_frames / batch_size steps): set it to e.g. '
             f'{max(b, w // b * b)}.')


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Checks the types and value ranges of the fields lanjax reads.

  Raises:
    ConfigError (a ValueError) naming the field, the allowed values and what
    it got.
  """
  if config.get('experiment') == 'newsgroups' and 'eval' in config:
    n = config.eval.get('compare_examples', 1)
    _check(_is_int(n) and n >= 1,
           'config.eval.compare_examples must be an int >= 1 for 20 '
           'Newsgroups: its deletion claims and diagnostics are measured on '
           f'the compared documents, got {_got(n)}.')
  if 'lan' in config:
    lan = config.lan
    _check(_is_number(lan.beta) and lan.beta > 0,
           'config.lan.beta must be a number > 0 (it weighs the mean mask, '
           f'eq. 3), got {_got(lan.beta)}.')
    _check(_is_int(lan.num_samples) and lan.num_samples >= 1,
           'config.lan.num_samples (K, noise samples per example) must be an '
           f'int >= 1, got {_got(lan.num_samples)}.')
    _check(lan.get('arch', 'mlp') in ('mlp', 'conv'),
           "config.lan.arch must be 'mlp' (FC layers, any input) or 'conv' "
           f"(strided convs, images), got {lan.get('arch')!r}.")
    _check(lan.noise in ('constant', 'bootstrap', 'background'),
           f"config.lan.noise must be 'constant', 'bootstrap' or "
           f"'background' (SDC: mosaics of background segments only), got "
           f'{lan.noise!r}.')
    if 'fidelity_budget' in lan:
      _check(_is_number(lan.fidelity_budget) and lan.fidelity_budget >= 0,
             'config.lan.fidelity_budget must be a number >= 0 (0: fixed '
             'beta; > 0: the mean L_F to keep, beta adapted), got '
             f'{_got(lan.fidelity_budget)}.')
      _check(_is_number(lan.get('beta_learning_rate', 0.02))
             and lan.get('beta_learning_rate', 0.02) > 0,
             'config.lan.beta_learning_rate must be a number > 0, got '
             f'{_got(lan.get("beta_learning_rate"))}.')
    if 'chunk_size' in lan:
      _check(_is_int(lan.chunk_size) and lan.chunk_size >= 0,
             'config.lan.chunk_size must be an int >= 0 (0: no chunking), '
             f'got {_got(lan.chunk_size)}.')
    if 'cpu_max_inputs' in lan:
      _check(_is_int(lan.cpu_max_inputs) and lan.cpu_max_inputs >= 0,
             'config.lan.cpu_max_inputs must be an int >= 0 (0: never tile '
             f'the K x B evaluations of F), got {_got(lan.cpu_max_inputs)}.')
    if 'chunk_memory_mb' in lan:
      _check(_is_number(lan.chunk_memory_mb) and lan.chunk_memory_mb >= 0,
             'config.lan.chunk_memory_mb must be a number >= 0 (0: no memory '
             f'budget), got {_got(lan.chunk_memory_mb)}.')
  for part in ('f', 'lan'):
    if part in config:
      sub = config[part]
      for key in ('batch_size', 'num_steps'):
        if key in sub:
          _check(_is_int(sub[key]) and sub[key] >= 1,
                 f'config.{part}.{key} must be an int >= 1, got '
                 f'{_got(sub[key])}.')
      _check(_is_number(sub.learning_rate) and sub.learning_rate > 0,
             f'config.{part}.learning_rate must be a number > 0, got '
             f'{_got(sub.learning_rate)}.')
      _check(sub.get('lr_schedule', 'constant') in ('constant', 'cosine'),
             f"config.{part}.lr_schedule must be 'constant' or 'cosine', got "
             f"{_got(sub.get('lr_schedule'))}.")
  for key in ('log_every', 'checkpoint_every'):
    if key in config:
      _check(_is_int(config[key]) and config[key] >= 1,
             f'config.{key} must be an int >= 1, got {_got(config[key])}.')
  if 'data' in config and 'value_range' in config.data:
    vr = config.data.value_range
    _check(len(vr) == 2 and all(_is_number(v) for v in vr) and vr[0] < vr[1],
           'config.data.value_range must be (low, high) with low < high, got '
           f'{vr!r}.')
  if 'data' in config and 'window_frames' in config.data:
    _check_window(config)
  if 'num_devices' in config:
    import jax  # pylint: disable=g-import-not-at-top
    n = config.num_devices or jax.device_count()
    _check(_is_int(config.num_devices) and 0 < n <= jax.device_count(),
           f'config.num_devices is {config.num_devices!r} but there are '
           f'{jax.device_count()} devices; use 0 (all) or 1 to '
           f'{jax.device_count()}.')
    for part in ('f', 'lan'):
      if part in config and 'batch_size' in config[part]:
        _check(config[part].batch_size % n == 0,
               f'config.{part}.batch_size {config[part].batch_size} does not '
               f'divide over the {n} devices; use a multiple of {n}.')
  return config


def _flatten(d, prefix=''):
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def save(config: ml_collections.ConfigDict, workdir: str) -> list[str]:
  """Records the config used in ``workdir/config.json``.

  Where the work dir already holds the config of an earlier run that differs,
  prints a warning naming the changed fields: a resumed run continues from
  its checkpoints with the new values (changed shapes are refused when the
  checkpoints are restored; other changes, e.g. ``lan.beta``, are not).

  Returns:
    The fields that changed, e.g. ``['lan.beta']``.
  """
  path = os.path.join(workdir, 'config.json')
  text = config.to_json_best_effort(indent=2) + '\n'
  changed = []
  if os.path.exists(path):
    try:
      with open(path) as fh:
        old = _flatten(json.load(fh))
      new = _flatten(json.loads(text))
      changed = sorted(k for k in set(old) | set(new)
                       if old.get(k) != new.get(k))
    except (ValueError, AttributeError):
      changed = []
    if changed:
      print(f'WARNING: {workdir} holds a run of another config (changed: '
            f'{", ".join(changed)}); its checkpoints resume with the new '
            'values. Use another --workdir to start a separate run.',
            flush=True)
  io.write_text(path, text)
  return changed


# ----------------------------------------------------------------------------
# Command lines.


def parse_flags(argv: Sequence[str], *, flag_values=None,
                config_flag: str = 'config') -> list[str]:
  """absl flags parser for the CLIs, with clear errors for config overrides.

  Use as ``app.run(main, flags_parser=parse_flags)``. An override of a field
  the config does not have (``--config.lan.bta=3``) exits with a message that
  names it, suggests the closest field and lists the valid ones, instead of a
  traceback; a value of the wrong type (``--config.lan.beta=abc``) exits with
  absl's message, which names the flag and the value.

  Returns:
    The remaining (non-flag) arguments, as absl's default parser does.
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  fv = flags.FLAGS if flag_values is None else flag_values
  try:
    return fv(list(argv))
  except flags.Error as e:
    raise SystemExit(
        f'FATAL Flags parsing error: {e}\n'
        'Pass --helpshort or --helpfull to see help on flags.') from None
  except (AttributeError, KeyError) as e:
    message = unknown_override_message(argv, fv, config_flag=config_flag)
    if message is None:
      raise
    raise SystemExit(message) from None


def _config_spec(argv, fv, config_flag) -> str:
  """The ``path[:variant]`` of the config on the command line, or the default."""
  for i, arg in enumerate(argv):
    m = re.match(rf'^--?{config_flag}(=(.*))?$', arg)
    if m:
      if m.group(1) is not None:
        return m.group(2)
      if i + 1 < len(argv):
        return argv[i + 1]
  return str(fv[config_flag].default_as_str).strip("'\"")


def unknown_override_message(argv: Sequence[str], fv,
                             config_flag: str = 'config') -> Optional[str]:
  """The message for the first ``--config.a.b`` in ``argv`` the config lacks.

  Returns None if every override names an existing field.
  """
  try:
    config = fv[config_flag].parser.parse(_config_spec(argv, fv, config_flag))
  except Exception:  # pylint: disable=broad-except
    return None
  for arg in argv:
    m = re.match(rf'^--?(?:no)?{config_flag}\.([^=]+)', arg)
    if not m:
      continue
    node, where = config, config_flag
    for key in m.group(1).split('.'):
      if not isinstance(node, (ml_collections.ConfigDict, dict)):
        return (f'Unknown config field {where}.{key} (from {arg}): {where} is '
                f'a {type(node).__name__} ({node!r}), it has no fields.')
      if key not in node:
        valid = sorted(node.keys())
        close = difflib.get_close_matches(key, valid, n=1)
        hint = f' Did you mean {where}.{close[0]}?' if close else ''
        return (f'Unknown config field {where}.{key} (from {arg}).{hint}\n'
                f'Valid fields of {where}: {", ".join(valid)}.')
      node, where = node[key], f'{where}.{key}'
  return None


def validate_or_exit(config: ml_collections.ConfigDict):
  """`validate` for the CLIs: an invalid config exits with its message."""
  try:
    return validate(config)
  except ConfigError as e:
    raise SystemExit(f'Invalid config: {e}') from None
