"""Writes the mutation-testing report from mutmut's results (``mutants/``).

Usage (after ``tools/mutation.sh`` ran mutmut)::

  python tools/mutation_report.py > docs/mutation_report.md

Counts, per module, the mutants of the functions in scope (the core modules
and the attribution methods whole; in the training code only
`apply_gradients`, `classifier_update` and `lan_update`), killed / survived /
not run, and lists every survivor with its diff and, where
``tools/mutation_equivalents.tsv`` names it, why it is equivalent (no test
can tell it from the original). The kill rate excludes listed equivalents;
the raw rate counts them as survivors. A module whose mutants did not all run
is rated on the longest run prefix of its seeded random order (`order`): a
uniform sample, with the 95% Wilson interval of its rate.
"""

from __future__ import annotations

import collections
import datetime
import glob
import json
import os
import random
import subprocess
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# module -> functions in scope (None: all of them).
SCOPE = {
    'corruption': None, 'noise': None, 'losses': None, 'objective': None,
    'metrics': None, 'attribution': None,
    'training': ('apply_gradients', 'classifier_update', 'lan_update'),
}
KILLED = {1, 3, 36, -24, 24, 152, 255}  # failed tests, pytest error, timeouts
SURVIVED = {0}


def wilson(k, n, z=1.96):
  """95% Wilson interval of a proportion k / n (for sampled runs)."""
  if n == 0:
    return float('nan'), float('nan')
  p = k / n
  centre = (p + z * z / (2 * n)) / (1 + z * z / n)
  half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
  return centre - half, centre + half


def _module(meta_path):
  rel = os.path.relpath(meta_path, os.path.join(ROOT, 'mutants'))
  return rel[:-len('.py.meta')].replace(os.sep, '.')


def _function(key):
  """``lanjax.noise.xǁBootstrapNoiseǁsample__mutmut_3`` -> ``BootstrapNoise.sample``."""
  name = key.rsplit('.', 1)[-1].split('__mutmut_')[0]
  if name.startswith('xǁ'):  # a method: xǁClassǁmethod
    return name[2:].replace('ǁ', '.')
  return name[2:] if name.startswith('x_') else name


def _in_scope(module, function):
  short = module.split('.')[1] if module.count('.') >= 1 else module
  if short not in SCOPE:
    return None
  functions = SCOPE[short]
  if functions is not None and function not in functions:
    return None
  return short


def load():
  results = {}
  for meta in sorted(glob.glob(os.path.join(ROOT, 'mutants', 'lanjax', '**',
                                            '*.py.meta'), recursive=True)):
    module = _module(meta)
    with open(meta) as fh:
      codes = json.load(fh)['exit_code_by_key']
    for key, code in codes.items():
      short = _in_scope(module, _function(key))
      if short is not None:
        results[key] = (short, _function(key), code)
  return results


def order(keys, module, seed=0):
  """The mutants ``keys`` of ``module`` in one seeded random order; a
  sample of N is its first N (tools/mutation_sample.py), so a larger sample
  extends a smaller one. Each module has its own order."""
  keys = sorted(keys)
  random.Random(f'{seed}:{module}').shuffle(keys)
  return keys


def rated(results, module, keys, seed=0):
  """The mutants of ``module`` its kill rate is measured on: all of them
  when all ran, else the longest prefix of `order` that ran (a uniform
  sample; mutants run outside it, e.g. reruns of named ones, would bias
  it)."""
  if all(results[k][2] is not None for k in keys):
    return list(keys), True
  sample = []
  for key in order(keys, module, seed):
    if results[key][2] is None:
      break
    sample.append(key)
  return sample, False


def load_equivalents(name='mutation_equivalents.tsv'):
  path = os.path.join(ROOT, 'tools', name)
  out = {}
  if os.path.exists(path):
    with open(path) as fh:
      for line in fh:
        if line.strip() and not line.startswith('#'):
          name, reason = line.rstrip('\n').split('\t', 1)
          out[name] = reason
  return out


def load_timing():
  """Rows ``date | scope | jobs | wall s | user and sys time | load``
  that tools/mutation.sh appends to mutants/timing.log after each run."""
  path = os.path.join(ROOT, 'mutants', 'timing.log')
  if not os.path.exists(path):
    return []
  with open(path) as fh:
    return [l.strip() for l in fh if l.strip()]


def diff(name):
  run = subprocess.run(['mutmut', 'show', name], cwd=ROOT, text=True,
                       capture_output=True, check=False)
  lines = [l for l in run.stdout.splitlines()
           if l.startswith(('+', '-')) and not l.startswith(('+++', '---'))]
  return '\n'.join(lines)


def _status(key, code, equivalents, new_kills):
  if key in equivalents:
    return 'equivalent'
  if key in new_kills:
    return ('killed by a new test (not rerun under mutmut yet)' if code == 0
            else 'killed by a new test, rerun under mutmut: '
            + ('killed' if code in KILLED else f'exit code {code}'))
  return 'SURVIVED' if code == 0 else f'exit code {code}'


def main():
  results = load()
  equivalents = load_equivalents()
  new_kills = load_equivalents('mutation_new_kills.tsv')
  seed = int(os.environ.get('MUTATION_SEED', '0'))
  keys_by_module = collections.defaultdict(list)
  for key, (module, _, _) in sorted(results.items()):
    keys_by_module[module].append(key)
  rows = []
  for module in SCOPE:
    keys = keys_by_module.get(module, [])
    if not keys:
      rows.append(f'| {module} | 0 | 0 | | | | | | | not run | | | | |')
      continue
    run = sum(results[k][2] is not None for k in keys)
    sample, complete = rated(results, module, keys, seed)
    c = collections.Counter()
    for key in sample:
      code = results[key][2]
      if code in KILLED:
        c['killed'] += 1
      elif code in SURVIVED and key in equivalents:
        c['equivalent'] += 1
      elif code in SURVIVED:
        c['survived'] += 1
        c['new test'] += key in new_kills
      else:
        c['other'] += 1  # no tests (33), suspicious, segfault
    n = len(sample)
    denom = n - c['equivalent']
    rate = f'{100 * c["killed"] / denom:.1f}%' if denom else 'n/a'
    raw = f'{100 * c["killed"] / n:.1f}%' if n else 'n/a'
    with_new = c['killed'] + c['new test']
    new_rate = f'{100 * with_new / denom:.1f}%' if denom else 'n/a'
    if complete:
      interval = new_interval = 'all run'
    elif denom:
      low, high = wilson(c['killed'], denom)
      interval = f'[{100 * low:.0f}%, {100 * high:.0f}%]'
      low, high = wilson(with_new, denom)
      new_interval = f'[{100 * low:.0f}%, {100 * high:.0f}%]'
    else:
      interval = new_interval = ''
    rows.append(
        f'| {module} | {len(keys)} | {run} | {"all" if complete else n} | '
        f'{c["killed"]} | {c["survived"]} | {c["new test"]} | '
        f'{c["equivalent"]} | {c["other"]} | {rate} | {interval} | '
        f'{new_rate} | {new_interval} | {raw} |')
  with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as fh:
    selection = tomllib.load(fh)['tool']['mutmut'][
        'pytest_add_cli_args_test_selection']
  out = ['# Mutation testing report', '',
         f'Generated {datetime.date.today()} by `tools/mutation.sh` (mutmut '
         '3.8.1). Scope: the core modules and the attribution methods whole, '
         'and `apply_gradients`, `classifier_update`, `lan_update` of the '
         'training code. Error-message strings are not mutated '
         '(`do_not_mutate_patterns` in pyproject.toml; tests/test_errors.py '
         'checks them). For each mutant mutmut runs, fastest first and up to '
         'the first failure, those of the selected tests that reached the '
         'mutated function in its stats run; selected: '
         + ', '.join(f'`{t}`' for t in selection) + '.', '',
         'Every verdict below is mutmut\'s. Kill rate = killed / (rated - '
         'equivalent); raw = killed / rated. "Rated": the mutants a module\'s '
         'rate is measured on: all of them where all ran, else a uniform '
         'seeded sample (the first N of the module\'s seeded random order, '
         'tools/mutation_sample.py) with the 95% Wilson interval of the rate; '
         'mutants run outside the sample (reruns of named survivors) are in '
         '"run" but not in the rate. "New test": survivors not rerun yet '
         'that a test written for them kills (planted by hand, watched to '
         'fail; tools/mutation_new_kills.tsv); "with new tests" counts them '
         'as killed.', '',
         '| module | mutants | run | rated | killed | survived | of which '
         'new test | equivalent | other | kill rate | 95% interval | with new '
         'tests | 95% interval | raw |',
         '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|'] + rows
  timing = load_timing()
  if timing:
    out += ['', '## Runs', '',
            'Appended by tools/mutation.sh after each `mutmut run` (wall time '
            'includes mutmut\'s stats and clean-test runs; user and system '
            'time of all its processes; the machine is shared, so the load '
            'average is part of the measurement).', '',
            '| date | mutants (globs) | jobs | wall s | user, sys | load 1/5/15 '
            'min |', '|---|---|---|---|---|---|']
    out += ['| ' + row + ' |' for row in timing]
  survivors = [k for k, (_, _, code) in sorted(results.items())
               if code is not None and (code not in KILLED or k in new_kills)]
  out += ['', '## Survivors', '',
          'Every mutant that survived a run: equivalent ones with the reason '
          'no test can tell them from the original; the others with the '
          'test written for them and mutmut\'s verdict when rerun.', '']
  for key in survivors:
    code = results[key][2]
    out.append(f'### `{key}` ({results[key][1]}): '
               f'{_status(key, code, equivalents, new_kills)}')
    if key in equivalents:
      out += ['', equivalents[key]]
    elif key in new_kills:
      out += ['', f'Killed by `{new_kills[key]}` (planted by hand, watched '
                  'to fail).']
    out += ['', '```diff', diff(key), '```', '']
  stale = sorted(k for k in equivalents
                 if k not in results or results[k][2] not in (None, 0))
  pending = sorted(k for k in equivalents
                   if k in results and results[k][2] is None)
  if pending:
    out += ['## Equivalents not run yet', '',
            'Listed in tools/mutation_equivalents.tsv, not run in this '
            'report: ' + ', '.join(f'`{s}`' for s in pending), '']
  if stale:
    out += ['## Stale equivalents', '',
            'Listed in tools/mutation_equivalents.tsv but not survivors now '
            '(renumbered after a code change, or killed): '
            + ', '.join(f'`{s}`' for s in stale), '']
  notes = os.path.join(ROOT, 'tools', 'mutation_notes.md')
  if os.path.exists(notes):
    with open(notes) as fh:
      out += ['', fh.read().rstrip()]
  sys.stdout.write('\n'.join(out) + '\n')


if __name__ == '__main__':
  main()
