"""Trains an experiment's black box F, then its LAN A; then evaluates.

  python train.py                       # translated MNIST, the default config
  python train.py --config configs/translated_mnist.py:quick --workdir /tmp/q
  python train.py --config.lan.beta=7   # any config field can be overridden

Re-running the same command in the same --workdir resumes from the latest
checkpoints; a finished run only re-evaluates.
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
  config_lib.save(config, workdir)
  experiment = get_experiment(config.experiment)
  experiment.train(config, workdir)
  if config.evaluate_after_train:
    experiment.evaluate(config, workdir)


if __name__ == '__main__':
  app.run(main, flags_parser=config_lib.parse_flags)
