"""Writes the mutation-testing report from mutmut's results (``mutants/``).

Usage (after ``tools/mutation.sh`` ran mutmut)::

  python tools/mutation_report.py > docs/mutation_report.md

Counts, per module, the mutants of the functions in scope (the core modules
and the attribution methods whole; in the training code only
`apply_gradients`, `classifier_update` and `lan_update`), killed / survived /
not run, and lists every survivor with its
diff and, where ``tools/mutation_equivalents.tsv`` names it, why it is
equivalent (no test can tell it from the original). The kill rate excludes
listed equivalents; the raw rate counts them as survivors.
"""

from __future__ import annotations

import collections
import datetime
import glob
import json
import os
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


def main():
  results = load()
  equivalents = load_equivalents()
  new_kills = load_equivalents('mutation_new_kills.tsv')
  by_module = collections.defaultdict(collections.Counter)
  survivors = []
  for key, (module, function, code) in sorted(results.items()):
    c = by_module[module]
    c['total'] += 1
    if code is None:
      c['not run'] += 1
    elif code in KILLED:
      c['killed'] += 1
    elif code in SURVIVED:
      if key in equivalents:
        c['equivalent'] += 1
      else:
        c['survived'] += 1
        c['new test'] += key in new_kills
      survivors.append((key, function))
    else:
      c['other'] += 1  # no tests (5, 33), suspicious, segfault
      survivors.append((key, function))
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
         'Kill rate = killed / (run - equivalent); raw = killed / run. Where '
         'only a sample of a module\'s mutants ran, the interval is the 95% '
         'Wilson interval of its kill rate (the sample is uniform, seeded: '
         'tools/mutation_sample.py). "New test": survivors of the run killed '
         'since by a test written for them (planted by hand, watched to '
         'fail; tools/mutation_new_kills.tsv); "with new tests" counts them '
         'as killed.', '',
         '| module | mutants | run | killed | survived | of which new test | '
         'equivalent | other | kill rate | 95% interval | with new tests | '
         '95% interval | raw |',
         '|---|---|---|---|---|---|---|---|---|---|---|---|---|']
  for module in SCOPE:
    c = by_module.get(module)
    if not c:
      out.append(f'| {module} | 0 | 0 | | | | | | not run | | | | |')
      continue
    run = c['total'] - c['not run']
    denom = run - c['equivalent']
    rate = f'{100 * c["killed"] / denom:.1f}%' if denom else 'n/a'
    raw = f'{100 * c["killed"] / run:.1f}%' if run else 'n/a'
    interval = new_interval = ''
    with_new = c['killed'] + c['new test']
    new_rate = f'{100 * with_new / denom:.1f}%' if denom else 'n/a'
    if denom and run < c['total']:
      low, high = wilson(c['killed'], denom)
      interval = f'[{100 * low:.0f}%, {100 * high:.0f}%]'
      low, high = wilson(with_new, denom)
      new_interval = f'[{100 * low:.0f}%, {100 * high:.0f}%]'
    out.append(f'| {module} | {c["total"]} | {run} | {c["killed"]} | '
               f'{c["survived"]} | {c["new test"]} | {c["equivalent"]} | '
               f'{c["other"]} | {rate} | {interval} | {new_rate} | '
               f'{new_interval} | {raw} |')
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
  out += ['', '## Survivors', '',
          'Each with its diff; equivalent ones with the reason no test can '
          'tell them from the original.', '']
  for key, function in survivors:
    code = results[key][2]
    status = ('equivalent' if key in equivalents else
              'killed by a new test' if key in new_kills and code == 0 else
              'SURVIVED' if code == 0 else f'exit code {code}')
    out.append(f'### `{key}` ({function}): {status}')
    if key in equivalents:
      out.append('')
      out.append(equivalents[key])
    elif key in new_kills and code == 0:
      out.append('')
      out.append(f'Killed by `{new_kills[key]}` (planted by hand).')
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
