"""Evaluates trained checkpoints: figures, tables and metrics.json.

  python evaluate.py --workdir runs/translated_mnist
  python evaluate.py --config configs/translated_mnist.py:quick --workdir /tmp/q
"""

import os

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from lanjax import config as config_lib
from lanjax.experiments import get_experiment

_HERE = os.path.dirname(os.path.abspath(__file__))
_CONFIG = config_flags.DEFINE_config_file(
    'config', os.path.join(_HERE, 'configs', 'translated_mnist.py'),
    'Experiment config file (configs/*.py[:variant]).', lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Run directory (default: runs/<experiment>).')


def main(argv):
  del argv
  if not flags.FLAGS['verbosity'].present:  # keep library INFO logs quiet
    logging.set_verbosity(logging.WARNING)
  config = config_lib.validate_or_exit(_CONFIG.value)
  workdir = _WORKDIR.value or os.path.join('runs', config.experiment)
  get_experiment(config.experiment).evaluate(config, workdir)


if __name__ == '__main__':
  app.run(main, flags_parser=config_lib.parse_flags)
