"""The paper's experiments, one module each, with ``train`` and ``evaluate``.

Each module exposes ``train(config, workdir)`` and ``evaluate(config,
workdir) -> metrics``; ``config.experiment`` names the module.
"""

from __future__ import annotations

import importlib

EXPERIMENTS = ('translated_mnist', 'newsgroups')


def get_experiment(name: str):
  """The experiment module called ``name``."""
  if name not in EXPERIMENTS:
    raise ValueError(f'Unknown experiment {name!r}; expected one of: '
                     f'{", ".join(EXPERIMENTS)}.')
  return importlib.import_module(f'lanjax.experiments.{name}')
