"""pytest plugin for mutation runs (tools/mutation.sh): fastest tests first.

mutmut's fork server hands each mutant's tests to pytest in no particular
order and pytest stops at the first failure (``-x``), so a mutant that the
fastest of its tests kills should not wait for the slowest. This sorts the
collected tests by the durations mutmut measured in its stats run
(``mutants/mutmut-stats.json``; the working directory of a mutant run is
``mutants/``). Without that file (the stats run itself) the order is kept.
Verdicts do not depend on the order: the tests are independent.
"""

import json
import os

_STATS = 'mutmut-stats.json'


def pytest_collection_modifyitems(session, config, items):
  del session, config
  if not os.path.exists(_STATS):
    return
  with open(_STATS) as fh:
    durations = json.load(fh).get('duration_by_test', {})
  if durations:
    items.sort(key=lambda item: durations.get(item.nodeid, float('inf')))
