"""What train.py and evaluate.py share: flags, config checks, logging."""

from __future__ import annotations

import os
from typing import Callable

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from lanjax import config as config_lib

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(_ROOT, 'configs', 'translated_mnist.py')


def run(main: Callable[..., None]) -> None:
  """Runs ``main(config, workdir)`` under absl with lanjax's common flags.

  ``--config configs/x.py[:variant]`` (default: translated MNIST) with
  ``--config.a.b=value`` overrides, checked by `lanjax.config.validate`, and
  ``--workdir`` (default: ``runs/<experiment>``).
  """
  config_flag = config_flags.DEFINE_config_file(
      'config', DEFAULT_CONFIG,
      'Experiment config file (configs/*.py[:variant]).', lock_config=True)
  workdir_flag = flags.DEFINE_string(
      'workdir', None, 'Run directory (default: runs/<experiment>).')

  def _main(argv):
    del argv
    if not flags.FLAGS['verbosity'].present:  # keep library INFO logs quiet
      logging.set_verbosity(logging.WARNING)
    if config_flag.value.get('distributed', False):
      # Multi-host (TPU pod slices, GPU clusters): join the other processes
      # before JAX is used; coordinator and ranks come from the environment.
      import jax  # pylint: disable=g-import-not-at-top
      jax.distributed.initialize()
    config = config_lib.validate_or_exit(config_flag.value)
    main(config, workdir_flag.value or os.path.join('runs', config.experiment))

  app.run(_main, flags_parser=config_lib.parse_flags)
