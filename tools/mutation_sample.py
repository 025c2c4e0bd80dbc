"""Prints a seeded random sample of the mutants in scope, N per module.

Usage (tools/mutation.sh does this when MUTATION_SAMPLE=N is set)::

  python tools/mutation_sample.py N [SEED]

For a machine too busy for every mutant: the kill rate of a uniform sample
estimates each module's kill rate (docs/mutation_report.md gives its 95%
interval). Each module's mutants are put in one seeded random order
(`mutation_report.order`) and the sample of N is the first N of it, so a
larger sample extends a smaller one: only the mutants of the sample that have no result
yet in ``mutants/`` are printed (mutmut reruns every mutant it is named),
and a rerun with a larger N runs only the new ones. Reads the mutant names
from mutmut's ``mutants/`` (made by any earlier ``mutmut run``, which
generates the mutants of every file at once).
"""

import collections
import os
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
  modules = collections.defaultdict(list)
  for key, (module, _, _) in results.items():
    modules[module].append(key)
  for module in mutation_report.SCOPE:
    for key in mutation_report.order(modules[module], module, seed)[:n]:
      if results[key][2] is None:
        print(key)


if __name__ == '__main__':
  main()
