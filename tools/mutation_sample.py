"""Prints a seeded random sample of the mutants in scope, N per module.

Usage (tools/mutation.sh does this when MUTATION_SAMPLE=N is set)::

  python tools/mutation_sample.py N [SEED]

For a machine too busy for every mutant: the kill rate of a uniform sample
estimates each module's kill rate (docs/mutation_report.md gives its 95%
interval). Reads the mutant names from mutmut's ``mutants/`` (made by any
earlier ``mutmut run``, which generates the mutants of every file at once).
"""

import collections
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mutation_report  # pylint: disable=g-import-not-at-top


def main():
  n = int(sys.argv[1])
  seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
  results = mutation_report.load()
  if not results:
    sys.exit('No mutants in mutants/: run mutmut once first, e.g. '
             "bash tools/mutation.sh 'lanjax.corruption.*'")
  by_module = collections.defaultdict(list)
  for key, (module, _, _) in sorted(results.items()):
    by_module[module].append(key)
  rng = random.Random(seed)
  for module in mutation_report.SCOPE:
    keys = by_module.get(module, [])
    for key in sorted(rng.sample(keys, min(n, len(keys)))):
      print(key)


if __name__ == '__main__':
  main()
