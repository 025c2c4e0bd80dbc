#!/usr/bin/env bash
# Mutation testing of lanjax's core modules and training steps (not in CI).
#
#   pip install -e ".[mutation]"             # mutmut 3.8.1
#   bash tools/mutation.sh                   # everything in scope
#   bash tools/mutation.sh 'lanjax.metrics.*'   # one module (mutmut globs)
#   MUTATION_JOBS=8 bash tools/mutation.sh   # more parallel mutants
#   MUTATION_SAMPLE=70 bash tools/mutation.sh   # a seeded sample, 70 per module
#                                              (needs mutants/ from a run; runs
#                                              only the sample's mutants not
#                                              run yet: a larger N extends a
#                                              smaller one)
#
# mutmut copies lanjax/ and tests/ into mutants/, makes every mutant of the
# modules in [tool.mutmut] only_mutate (pyproject.toml), and runs, for each
# mutant, the tests of the selected files that reach the mutated function.
# Results accumulate in mutants/ (a rerun only runs what changed); the report
# goes to docs/mutation_report.md. The seconds per mutant and the time of a
# whole run are in the report.
#
# What makes a mutant cheap (each runs in a fresh process, so by default
# every test would import JAX and compile every program again):
# - JAX's persistent compilation cache: the stats and clean runs compile every
#   program of the selected tests once; a mutant then compiles only the
#   programs its mutation changed (a cache key is the program itself, so a
#   changed program never reuses a stale executable);
# - XLA at its lowest backend optimisation level: those programs compile
#   faster (the tests' tolerances hold at -O0: the clean run must pass);
# - the fork server imports JAX, Flax, optax and lanjax once
#   (tools/mutation_preload.txt);
# - the fastest tests run first (tools/mutation_order.py), and pytest stops
#   at the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL=2
export JAX_COMPILATION_CACHE_DIR="$PWD/mutants/.jax_cache"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
export JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=-1
export XLA_FLAGS="--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true${XLA_FLAGS:+ $XLA_FLAGS}"
jobs="${MUTATION_JOBS:-2}"
# In scope: the core modules and the attribution methods whole; in the
# training code the three updates.
scope=(
  'lanjax.corruption.*' 'lanjax.noise.*' 'lanjax.losses.*'
  'lanjax.objective.*' 'lanjax.metrics.*' 'lanjax.attribution.*'
  'lanjax.training*x_apply_gradients__*' 'lanjax.training*x_classifier_update__*'
  'lanjax.training*x_lan_update__*'
)
if [ "$#" -gt 0 ]; then scope=("$@"); fi
if [ -n "${MUTATION_SAMPLE:-}" ]; then
  mapfile -t scope < <(python tools/mutation_sample.py "$MUTATION_SAMPLE" "${MUTATION_SEED:-0}")
  if [ "${#scope[@]}" -eq 0 ]; then  # (mutmut run with no names runs all)
    echo "every mutant of the sample has a result"
    python tools/mutation_report.py > docs/mutation_report.md
    exit 0
  fi
fi
start=$(date +%s)
mutmut run --max-children "$jobs" "${scope[@]}" || true  # survivors exit != 0
times > mutants/.times  # (no pipe: a subshell would report its own children)
cpu=$(tail -1 mutants/.times)  # user and system time of the finished children
label="${scope[*]}"
if [ -n "${MUTATION_SAMPLE:-}" ]; then label="sample of $MUTATION_SAMPLE per module (seed ${MUTATION_SEED:-0}): ${#scope[@]} mutants not run before"; elif [ "${#label}" -gt 200 ]; then label="${#scope[@]} mutants named"; fi
echo "$(date -u +%F) | ${label} | $jobs | $(( $(date +%s) - start )) | ${cpu} | $(cut -d' ' -f1-3 /proc/loadavg)" >> mutants/timing.log
python tools/mutation_report.py > docs/mutation_report.md
echo "report: docs/mutation_report.md"
