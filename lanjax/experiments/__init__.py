"""The paper's experiments, one module each, on one skeleton.

Each module defines ``EXPERIMENT``, a `skeleton.Experiment`: how to load its
data, its tasks (F and A to train), how to evaluate them. ``train.py`` and
``evaluate.py`` run it with `skeleton.run` and `skeleton.evaluate`;
``config.experiment`` names the module.
"""

from __future__ import annotations

import importlib

from lanjax.experiments import skeleton

EXPERIMENTS = ('translated_mnist', 'newsgroups', 'cifar10')


def get_experiment(name: str) -> skeleton.Experiment:
  """The `skeleton.Experiment` called ``name``."""
  if name not in EXPERIMENTS:
    raise ValueError(f'Unknown experiment {name!r}; expected one of: '
                     f'{", ".join(EXPERIMENTS)}.')
  return importlib.import_module(f'lanjax.experiments.{name}').EXPERIMENT
