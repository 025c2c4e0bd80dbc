#!/usr/bin/env bash
# Mutation testing of lanjax's core modules and training steps (not in CI).
#
#   pip install -r requirements-dev.txt      # mutmut
#   bash tools/mutation.sh                   # everything in scope
#   bash tools/mutation.sh 'lanjax.metrics.*'   # one module (mutmut globs)
#   MUTATION_JOBS=8 bash tools/mutation.sh   # more parallel mutants
#
# mutmut copies lanjax/ and tests/ into mutants/, makes every mutant of the
# modules in [tool.mutmut] only_mutate (pyproject.toml), and runs, for each
# mutant, the tests of the selected files that reach the mutated function.
# Results accumulate in mutants/ (a rerun only runs what changed); the report
# goes to docs/mutation_report.md. Several hours on 2 cores for all ~900
# mutants in scope; one module takes minutes to an hour.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL=2
jobs="${MUTATION_JOBS:-2}"
# In scope: the core modules whole; in the training code the three updates.
scope=(
  'lanjax.corruption.*' 'lanjax.noise.*' 'lanjax.losses.*'
  'lanjax.objective.*' 'lanjax.metrics.*'
  'lanjax.training*x_apply_gradients__*' 'lanjax.training*x_classifier_update__*'
  'lanjax.training*x_lan_update__*'
)
if [ "$#" -gt 0 ]; then scope=("$@"); fi
mutmut run --max-children "$jobs" "${scope[@]}" || true  # survivors exit != 0
python tools/mutation_report.py > docs/mutation_report.md
echo "report: docs/mutation_report.md"
