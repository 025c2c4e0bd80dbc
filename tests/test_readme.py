"""The README stays true: its example runs and its commands exist."""

import re

import jax.numpy as jnp
import numpy as np

from conftest import ROOT


def _readme():
  return (ROOT / 'README.md').read_text()


def test_explain_your_own_function_example_runs_and_learns():
  text = _readme()
  section = text[text.index('## Explain your own JAX function'):]
  code = re.search(r'```python\n(.*?)```', section, re.S).group(1)
  ns = {}
  exec(compile(code, 'README.md', 'exec'), ns)  # pylint: disable=exec-used
  importance = ns['importance']
  assert importance.shape == (4, 64)
  assert float(importance.min()) >= 0 and float(importance.max()) <= 1
  # F reads only the first 8 inputs: the LAN must find them.
  assert float(importance[:, :8].mean()) > float(importance[:, 8:].mean()) + 0.3
  assert np.isfinite(float(ns['loss']))


def test_readme_test_command_is_what_ci_runs():
  ci = (ROOT / '.ci' / 'run').read_text()
  assert 'python3 -m pytest -q -n auto tests' in ci
  assert 'python -m pytest -q -n auto tests' in _readme()
  for config in re.findall(r'configs/(\w+)\.py', _readme()):
    assert (ROOT / 'configs' / f'{config}.py').exists(), config


def test_attribution_example_runs_and_ranks_the_read_inputs():
  text = _readme()
  section = text[text.index('## Attribution methods and one evaluation'):]
  code = re.search(r'```python\n(.*?)```', section, re.S).group(1)
  ns = {}
  exec(compile(code, 'README.md', 'exec'), ns)  # pylint: disable=exec-used
  table = ns['table']['methods']
  # F reads the first 8 inputs: the real methods find them, random does not.
  for name in ('integrated_gradients', 'occlusion'):
    assert table[name]['mass_in_region']['low'] > 0.9, name
    assert (table[name]['deletion_auc/noise']['high']
            < table['random']['deletion_auc/noise']['low']), name
  assert table['random']['mass_in_region']['high'] < 0.2
  assert not table['random']['sanity_pass']
  assert ns['ig'].shape == (4, 64)
