"""Trains an experiment's black box F, then its LAN A; then evaluates.

  python train.py                       # translated MNIST, the default config
  python train.py --config configs/translated_mnist.py:quick --workdir /tmp/q
  python train.py --config.lan.beta=7   # any config field can be overridden

Re-running the same command in the same --workdir resumes from the latest
checkpoints; a finished run only re-evaluates. The data are loaded once.
One run per --workdir: a second train.py on a work dir in use is refused
(evaluate.py may read it).
Errors print one message and exit 1; --verbose prints the traceback.
"""

from lanjax import cli
from lanjax import config as config_lib
from lanjax.experiments import get_experiment
from lanjax.experiments import skeleton


def main(config, workdir):
  config_lib.save(config, workdir)
  skeleton.run(get_experiment(config.experiment), config, workdir)


if __name__ == '__main__':
  cli.run(main, lock=True)
