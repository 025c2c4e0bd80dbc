"""Config checks and records: fail before the first step, say what to fix."""

from __future__ import annotations

import os

import ml_collections

from lanjax import io


def _check(cond, msg):
  if not cond:
    raise ValueError(msg)


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Checks value ranges that the config's types cannot express.

  Raises:
    ValueError naming the field and the allowed values.
  """
  if 'lan' in config:
    lan = config.lan
    _check(lan.beta > 0, f'config.lan.beta must be > 0 (it weighs the mean '
           f'mask, eq. 3), got {lan.beta}.')
    _check(isinstance(lan.num_samples, int) and lan.num_samples >= 1,
           f'config.lan.num_samples (K) must be an int >= 1, got '
           f'{lan.num_samples!r}.')
    _check(lan.noise in ('constant', 'bootstrap'),
           f"config.lan.noise must be 'constant' or 'bootstrap', got "
           f'{lan.noise!r}.')
    _check(lan.chunk_size >= 0, 'config.lan.chunk_size must be >= 0 (0: no '
           f'chunking), got {lan.chunk_size}.')
  for part in ('f', 'lan'):
    if part in config:
      sub = config[part]
      for key in ('batch_size', 'num_steps'):
        if key in sub:
          _check(isinstance(sub[key], int) and sub[key] >= 1,
                 f'config.{part}.{key} must be an int >= 1, got '
                 f'{sub[key]!r}.')
      _check(sub.learning_rate > 0,
             f'config.{part}.learning_rate must be > 0, got '
             f'{sub.learning_rate}.')
  for key in ('log_every', 'checkpoint_every'):
    if key in config:
      _check(isinstance(config[key], int) and config[key] >= 1,
             f'config.{key} must be an int >= 1, got {config[key]!r}.')
  if 'num_devices' in config:
    import jax  # pylint: disable=g-import-not-at-top
    n = config.num_devices or jax.device_count()
    _check(0 < n <= jax.device_count(),
           f'config.num_devices is {config.num_devices} but there are '
           f'{jax.device_count()} devices.')
    for part in ('f', 'lan'):
      if part in config and 'batch_size' in config[part]:
        _check(config[part].batch_size % n == 0,
               f'config.{part}.batch_size {config[part].batch_size} does not '
               f'divide over the {n} devices; use a multiple of {n}.')
  return config


def save(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Records the config used in ``workdir/config.json``."""
  io.write_text(os.path.join(workdir, 'config.json'), config.to_json_best_effort(
      indent=2) + '\n')
