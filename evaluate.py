"""Evaluates trained checkpoints: figures, tables and metrics.json.

  python evaluate.py --workdir runs/translated_mnist
  python evaluate.py --config configs/translated_mnist.py:quick --workdir /tmp/q
"""

from lanjax import cli
from lanjax.experiments import get_experiment
from lanjax.experiments import skeleton


def main(config, workdir):
  skeleton.evaluate(get_experiment(config.experiment), config, workdir)


if __name__ == '__main__':
  cli.run(main, lock=False)
