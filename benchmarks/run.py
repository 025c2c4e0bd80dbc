"""lanjax benchmarks: LAN step throughput, FLOP/s, compile time, memory.

  python benchmarks/run.py            # the full run (tens of minutes on 2 cores)
  python benchmarks/run.py --quick    # a smoke run
  python benchmarks/run.py --out DIR  # where results.json / results.md go
  python benchmarks/run.py --sections peers explain --setups pong --merge
                                      # re-run sections, keep the others

Sections (``--sections``): ``lan`` (the LAN step, F's step and A's
inference of the setups of `SETUPS`), ``peers`` (each experiment's LAN step
against the same step in PyTorch, `benchmarks/torch_peers.py`, run when
torch imports: ``pip install -r benchmarks/requirements.txt``), ``explain``
(explanations per second of every attribution method on each experiment's
F, and A's training time), ``profile`` (where XLA spends translated MNIST's
steps, op by op), ``memory``.

Measures, in one process on whatever JAX backend is present:

* the matmul rate: f32 ``n x n`` matmuls, the "hardware" yardstick;
* for every registered LAN setup (`SETUPS`): the LAN training step
  (`training.lan_update` jitted by `training.jit` with the state donated, as
  `training.fit` runs it; batches and bootstrap noise made inside the step)
  for several K and batch sizes: examples/s, F-evaluations/s, the step's FLOPs
  from XLA's cost analysis and the FLOP/s they make, compile time, the share
  of the step spent making the batch and noise, and that no step recompiles;
  F's training step (`training.classifier_update`) and A's inference (masks/s);
* memory: XLA's memory analysis of the Pong LAN step (`pong_memory_step`,
  64x64x3 frames) for many noise samples with and without ``chunk_size``.

Timings are medians over repeated runs of a few chained steps after a
warm-up, with `jax.block_until_ready` closing every timed run; CPU time is
reported beside wall time because shared machines make wall time noisy.

Later experiments register their networks by adding a builder to `SETUPS`
(see `translated_mnist_setup`).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable, Optional

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

# PyTorch's OpenMP threads spin while they wait by default; on a shared
# machine (the load average is recorded) a descheduled spinning thread holds
# up every parallel op: measured 10x slower 2-thread torch steps at load 10.
# Passive waiting is the fair setting for the peer rows; set before torch loads.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np

from lanjax import io
from lanjax import training

SCHEMA_VERSION = 1

# ----------------------------------------------------------------------------
# Compile counting: every XLA backend compile reports its duration here.

_COMPILES = []


def _on_event(event, duration, **kwargs):
  del kwargs
  if event == '/jax/core/compile/backend_compile_duration':
    _COMPILES.append(duration)


jax.monitoring.register_event_duration_secs_listener(_on_event)


# ----------------------------------------------------------------------------
# Setups: what a benchmark needs to know about an experiment's networks.


@dataclasses.dataclass
class LanSetup:
  """One experiment's networks, built as its training code builds them.

  Attributes:
    lan_update: ``lan_update(batch_size, num_samples, chunk_size,
      cpu_max_inputs) -> update``, the experiment's own LAN step
      (`training.lan_update`).
    lan_state: A's initial training state.
    lan_data: the data pytree the LAN step reads (``'f_params'``,
      ``'noise'``, the training inputs).
    make_inputs: ``make_inputs(data, key, batch_size, num_samples) ->
      (x, noise)``: the batch and noise the step makes, alone (the input
      pipeline).
    f_update: ``f_update(batch_size) -> update``, F's training step, or None.
    f_state: F's initial training state.
    f_data: the data F's step reads.
    mask_fn: ``mask_fn(params, x) -> A(x)``.
    f_apply: ``f_apply(params, x) -> F(x)``.
    input_shape: one example's shape.
    batch_size: the default batch size.
    cpu_max_inputs: the experiment's CPU tiling (``config.lan``).
  """
  lan_update: Callable[..., Callable]
  lan_state: Any
  lan_data: Any
  make_inputs: Callable
  f_update: Optional[Callable[[int], Callable]]
  f_state: Any
  f_data: Any
  mask_fn: Callable
  input_shape: tuple
  batch_size: int = 128
  f_apply: Optional[Callable] = None
  cpu_max_inputs: int = 64


# ``cpu_max_inputs`` argument: the experiment's own ``config.lan`` value.
CONFIG = 'config'


def experiment_setup(name: str, variant: Optional[str] = None,
                     task_index: int = 0) -> LanSetup:
  """An experiment's F and A, built by the experiment's own public pieces.

  The data are the experiment's `skeleton.Experiment.synthetic_data`: random
  inputs of the dataset's shapes and sizes (the speed of a step does not
  depend on the values, and the benchmark needs no dataset).
  """
  import importlib  # pylint: disable=g-import-not-at-top
  from lanjax.experiments import get_experiment  # pylint: disable=g-import-not-at-top
  from lanjax.experiments import skeleton  # pylint: disable=g-import-not-at-top

  config = importlib.import_module(f'configs.{name}').get_config(variant)
  experiment = get_experiment(config.experiment)
  data = experiment.synthetic_data(config)
  task = experiment.tasks(config, data)[task_index]
  f_graphdef, f_state = skeleton.initial_state(task.make_f, config.f)
  lan_graphdef, lan_state = skeleton.initial_state(task.make_lan, config.lan)

  def lan_update(batch_size, num_samples, chunk_size=None,
                 cpu_max_inputs=CONFIG):
    c = config.copy_and_resolve_references()
    c.lan.batch_size, c.lan.num_samples = batch_size, num_samples
    c.lan.chunk_size = chunk_size or 0
    if cpu_max_inputs != CONFIG:
      c.lan.cpu_max_inputs = cpu_max_inputs or 0
    t = experiment.tasks(c, data)[task_index]
    return skeleton.lan_update(c, t, f_graphdef, lan_graphdef)

  def f_update(batch_size):
    c = config.copy_and_resolve_references()
    c.f.batch_size = batch_size
    return skeleton.f_update(c, experiment.tasks(c, data)[task_index],
                             f_graphdef)

  def make_inputs(step_data, key, batch_size, num_samples):
    c = config.copy_and_resolve_references()
    c.lan.batch_size = batch_size
    data_key, noise_key = jax.random.split(key)
    x = experiment.tasks(c, data)[task_index].lan_batch(step_data, data_key)
    return x, step_data['noise'].sample(noise_key, x, num_samples)

  x0 = task.lan_batch(task.train_data, jax.random.key(0))
  return LanSetup(
      lan_update=lan_update, lan_state=lan_state,
      lan_data=skeleton.lan_data(task, f_state['params']),
      make_inputs=make_inputs, f_update=f_update, f_state=f_state,
      f_data=task.train_data, mask_fn=skeleton.apply_fn(lan_graphdef),
      input_shape=tuple(x0.shape[1:]), batch_size=config.lan.batch_size,
      f_apply=skeleton.apply_fn(f_graphdef),
      cpu_max_inputs=config.lan.cpu_max_inputs)


def translated_mnist_setup() -> LanSetup:
  """Translated MNIST's F and A (appendix A), standard domain."""
  return experiment_setup('translated_mnist')


SETUPS: dict[str, Callable[[], LanSetup]] = {
    'translated_mnist': translated_mnist_setup,
    'cifar10': lambda: experiment_setup('cifar10'),
}

# Experiments whose LAN step has a PyTorch peer (benchmarks/torch_peers.py).
PEER_SETUPS = ('translated_mnist', 'newsgroups', 'cifar10', 'pong', 'sdc')


# ----------------------------------------------------------------------------
# Memory setups: many noise samples on large inputs.


def pong_memory_step(batch_size: int, num_samples: int,
                     chunk_size: Optional[int]):
  """The LAN step of the Pong experiment (appendix D) on synthetic frames.

  Built by `experiment_setup` from ``configs/pong.py:quick`` (its networks
  are the default's: F `lanjax.models.ConvAutoencoder`, L_F the squared
  error, A FC(500), FC(4096) with a 64x64x1 mask tiled over the colours,
  noise bootstrapped from a pool of frames; ``quick`` only keeps the
  synthetic pool small, 256 frames) with the given batch size, K and chunk
  size, untiled (the memory any backend needs).

  Returns:
    ``(update, state, data)`` for `jax.jit(update).lower(state, data, key)`.
  """
  setup = experiment_setup('pong', 'quick')
  update = setup.lan_update(batch_size, num_samples, chunk_size,
                            cpu_max_inputs=None)
  return update, setup.lan_state, setup.lan_data


# ----------------------------------------------------------------------------
# Measurements.


def _median(xs):
  return float(statistics.median(xs))


def matmul_rate(n: int, repeats: int) -> dict:
  """f32 ``n x n`` matmul FLOP/s: the machine's practical peak.

  The fastest of ``repeats`` calls, not their median: the yardstick is the
  peak, and on this shared machine the median of one run's calls read 300
  GFLOP/s where a quiet run read 408 (2026-12-07), which inflated every
  "% of the matmul rate" row by a third.
  """
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  mm = training.jit(lambda a, b: a @ b)
  jax.block_until_ready(mm(a, b))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(mm(a, b))
    times.append(time.perf_counter() - t0)
  t = min(times)
  return {'n': n, 'seconds': t, 'median_seconds': _median(times),
          'flops_per_s': 2 * n ** 3 / t}


def _cost(compiled) -> dict:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  cost = cost or {}
  mem = compiled.memory_analysis()
  out = {'flops': float(cost.get('flops', float('nan'))),
         'bytes_accessed': float(cost.get('bytes accessed', float('nan')))}
  if mem is not None:
    out.update(_memory(mem))
  return out


def _memory(mem) -> dict:
  """XLA's memory analysis: temporaries, arguments, outputs and their sum.

  ``total_bytes`` (temporaries + arguments + outputs - aliased) bounds what
  the compiled program holds at once; ``temp_size_in_bytes`` is the part the
  program's own intermediates (activations, noise) take.
  """
  keys = ('temp_size_in_bytes', 'argument_size_in_bytes',
          'output_size_in_bytes', 'alias_size_in_bytes')
  out = {k: int(getattr(mem, k, 0) or 0) for k in keys}
  out['total_bytes'] = (out['temp_size_in_bytes']
                        + out['argument_size_in_bytes']
                        + out['output_size_in_bytes']
                        - out['alias_size_in_bytes'])
  return out


def time_update(update, state, data, *, steps_per_run: int, repeats: int,
                warmup_s: float = 1.0, seed: int = 0) -> dict:
  """Times ``update`` as `training.fit` runs it: jitted, state donated.

  Compiles ahead of time (for the compile time and XLA's cost analysis), then
  runs warm-up runs (at least one, for at least ``warmup_s`` seconds) and
  ``repeats`` timed runs of ``steps_per_run`` chained steps, each run closed
  by `jax.block_until_ready`. Any XLA compile
  during the timed runs is counted in ``recompiles``.

  Returns:
    Seconds per step (median over runs), CPU seconds per step, compile time,
    cost analysis and the number of steady-state recompiles.
  """
  traces = [0]

  def counted(state, data, key):
    traces[0] += 1
    return update(state, data, key)

  step = training.jit(counted, donate_argnums=0)
  rng = jax.random.key(seed)
  state = jax.tree.map(jnp.copy, state)  # donated below: keep the caller's
  t0 = time.perf_counter()
  compiled = step.lower(state, data, rng).compile()
  compile_s = time.perf_counter() - t0
  cost = _cost(compiled)
  traced_before = traces[0]
  step_no = 0

  def one_run():
    nonlocal state, step_no
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps_per_run):
      state, metrics = step(state, data, jax.random.fold_in(rng, step_no))
      step_no += 1
    jax.block_until_ready((state, metrics))
    return time.perf_counter() - t0, time.process_time() - c0, metrics

  # Warm-up: the first run compiles (already done above) and fills caches
  # and thread pools; keep warming up for at least `warmup_s`.
  t_start = time.perf_counter()
  first_call_s, _, metrics = one_run()
  while time.perf_counter() - t_start < warmup_s:
    one_run()
  compiles_before, traces_warm = len(_COMPILES), traces[0]
  runs, cpu_runs = [], []
  for _ in range(repeats):
    wall, cpu, metrics = one_run()
    runs.append(wall / steps_per_run)
    cpu_runs.append(cpu / steps_per_run)
  if not np.isfinite(float(metrics['loss'])):
    raise FloatingPointError('The benchmarked step produced a non-finite loss.')
  cache_size = step._cache_size() if hasattr(step, '_cache_size') else None  # pylint: disable=protected-access
  return {
      'step_s': _median(runs),
      'step_s_min': float(min(runs)),
      'step_s_max': float(max(runs)),
      'cpu_s_per_step': _median(cpu_runs),
      'compile_s': compile_s,
      'warmup_run_s': first_call_s,
      'steps_per_run': steps_per_run,
      'runs': repeats,
      'recompiles': len(_COMPILES) - compiles_before,
      'retraces': traces[0] - traces_warm,
      'traces_total': traces[0],
      'traces_before_steps': traced_before,
      'jit_cache_size': cache_size,
      **cost,
  }


def time_fn(fn, *args, repeats: int, calls_per_run: int = 1) -> float:
  """Median seconds per call of the jitted ``fn(*args)`` after a warm-up."""
  fn = training.jit(fn)
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    for _ in range(calls_per_run):
      out = fn(*args)
    jax.block_until_ready(out)
    times.append((time.perf_counter() - t0) / calls_per_run)
  return _median(times)


def bench_lan(setup: LanSetup, *, batch_size: int, num_samples: int,
              chunk_size: Optional[int], steps_per_run: int, repeats: int,
              peak_flops: float, warmup_s: float = 1.0,
              cpu_max_inputs=CONFIG) -> dict:
  """One LAN-step measurement (see `time_update`) with derived rates."""
  if cpu_max_inputs == CONFIG:
    cpu_max_inputs = setup.cpu_max_inputs
  update = setup.lan_update(batch_size, num_samples, chunk_size,
                            cpu_max_inputs)
  r = time_update(update, setup.lan_state, setup.lan_data,
                  steps_per_run=steps_per_run, repeats=repeats,
                  warmup_s=warmup_s)
  inputs_s = time_fn(
      lambda data, key: setup.make_inputs(data, key, batch_size, num_samples),
      setup.lan_data, jax.random.key(1), repeats=repeats,
      calls_per_run=steps_per_run)
  f_evals = batch_size * num_samples
  tiled = (jax.default_backend() == 'cpu' and cpu_max_inputs
           and batch_size * num_samples > cpu_max_inputs
           and num_samples > max(1, cpu_max_inputs // batch_size))
  if chunk_size or tiled:
    # XLA's cost analysis counts a loop body once, not once per iteration:
    # take the FLOPs of the same step compiled without chunks.
    untiled = training.jit(setup.lan_update(batch_size, num_samples, None,
                                            None))
    compiled = untiled.lower(setup.lan_state, setup.lan_data,
                             jax.random.key(0)).compile()
    r['flops'] = _cost(compiled)['flops']
    r['flops_from'] = 'the step compiled without chunks (loop bodies count once)'
  f_evals = batch_size * num_samples
  r.update({
      'variant': 'default',
      'batch_size': batch_size, 'num_samples': num_samples,
      'chunk_size': chunk_size,
      'cpu_max_inputs': cpu_max_inputs if jax.default_backend() == 'cpu'
                        else None,
      'examples_per_s': batch_size / r['step_s'],
      'examples_per_s_best_run': batch_size / r['step_s_min'],
      'f_evals_per_s': f_evals / r['step_s'],
      'us_per_f_eval': r['step_s'] / f_evals * 1e6,
      'cpu_us_per_f_eval': r['cpu_s_per_step'] / f_evals * 1e6,
      'flops_per_s': r['flops'] / r['step_s'],
      'fraction_of_matmul_rate': r['flops'] / r['step_s'] / peak_flops,
      'input_pipeline_s': inputs_s,
      'input_pipeline_share': inputs_s / r['step_s'],
  })
  return r


def bench_f(setup: LanSetup, *, batch_size: int, steps_per_run: int,
            repeats: int, peak_flops: float, warmup_s: float = 1.0) -> dict:
  r = time_update(setup.f_update(batch_size), setup.f_state, setup.f_data,
                  steps_per_run=steps_per_run, repeats=repeats,
                  warmup_s=warmup_s)
  r.update({'batch_size': batch_size,
            'examples_per_s': batch_size / r['step_s'],
            'flops_per_s': r['flops'] / r['step_s'],
            'fraction_of_matmul_rate': r['flops'] / r['step_s'] / peak_flops})
  return r


def bench_masks(setup: LanSetup, *, batch_size: int, repeats: int) -> dict:
  params = setup.lan_state['params']
  x = jax.random.uniform(jax.random.key(2), (batch_size, *setup.input_shape))
  s = time_fn(setup.mask_fn, params, x, repeats=repeats, calls_per_run=3)
  return {'batch_size': batch_size, 'seconds': s,
          'masks_per_s': batch_size / s}


def bench_memory(*, batch_size: int, num_samples: int,
                 chunk_sizes) -> list[dict]:
  """XLA's memory analysis of the Pong LAN step, per chunk size, compiled
  as `training.fit` compiles it (the state donated)."""
  out = []
  for chunk in chunk_sizes:
    update, state, data = pong_memory_step(batch_size, num_samples, chunk)
    t0 = time.perf_counter()
    compiled = training.jit(update, donate_argnums=0).lower(
        state, data, jax.random.key(0)).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    out.append({'setup': 'pong_autoencoder_64x64x3',
                'batch_size': batch_size, 'num_samples': num_samples,
                'chunk_size': chunk, 'compile_s': compile_s,
                **(_memory(mem) if mem is not None else {})})
  return out


# ----------------------------------------------------------------------------
# Peers: the same LAN step in PyTorch (benchmarks/torch_peers.py).


def torch_available() -> bool:
  try:
    import torch  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return False
  return True


def _interleaved(runners: dict, *, repeats: int, min_run_s: float) -> dict:
  """Seconds per step of each runner, their runs interleaved.

  ``runners[name](n) -> seconds`` runs ``n`` steps. Each runner gets a
  warm-up run, then ``n`` is set so that one run takes about ``min_run_s``;
  the timed runs alternate between the runners (A B A B ...), so that load
  from other processes falls on all of them alike.

  Returns:
    ``{name: {'step_s', 'step_s_min', 'steps_per_run'}}``, medians over runs.
  """
  steps = {}
  for name, fn in runners.items():
    fn(1)  # compile / first-call costs
    t = fn(1)
    steps[name] = max(1, int(min_run_s / max(t, 1e-6)))
  times = {name: [] for name in runners}
  cpu = {name: [] for name in runners}
  for _ in range(repeats):
    for name, fn in runners.items():
      c0 = time.process_time()
      times[name].append(fn(steps[name]) / steps[name])
      cpu[name].append((time.process_time() - c0) / steps[name])
  return {name: {'step_s': _median(t), 'step_s_min': float(min(t)),
                 'cpu_s': _median(cpu[name]), 'steps_per_run': steps[name]}
          for name, t in times.items()}


def _jax_runner(update, state, data):
  step = training.jit(update, donate_argnums=0)
  box = {'state': jax.tree.map(jnp.copy, state), 'i': 0}
  rng = jax.random.key(0)

  def run_steps(n):
    t0 = time.perf_counter()
    for _ in range(n):
      box['state'], metrics = step(box['state'], data,
                                   jax.random.fold_in(rng, box['i']))
      box['i'] += 1
    jax.block_until_ready((box['state'], metrics))
    return time.perf_counter() - t0
  return run_steps


def _torch_runner(peer):
  def run_steps(n):
    t0 = time.perf_counter()
    for _ in range(n):
      loss = peer.step()
    float(loss)
    return time.perf_counter() - t0
  return run_steps


def bench_peers(names, ks, *, repeats: int, min_run_s: float,
                peak_flops: float, batch_size: Optional[int] = None
                ) -> list[dict]:
  """lanjax's LAN step against the same step in PyTorch eager, per
  experiment and K, at the experiment's default batch size, interleaved
  (`_interleaved`); torch on as many threads as XLA:CPU uses."""
  import torch  # pylint: disable=g-import-not-at-top
  import torch_peers  # pylint: disable=g-import-not-at-top
  threads = torch_peers.num_threads()
  torch.set_num_threads(threads)
  torch.manual_seed(0)
  out = []
  for name in names:
    setup = experiment_setup(name)
    b = batch_size or setup.batch_size
    for k in ks:
      update = setup.lan_update(b, k)
      untiled = training.jit(setup.lan_update(b, k, None, None))
      flops = _cost(untiled.lower(setup.lan_state, setup.lan_data,
                                  jax.random.key(0)).compile())['flops']
      peer = torch_peers.build(name, setup, batch_size=b, num_samples=k)
      t = _interleaved({'lanjax': _jax_runner(update, setup.lan_state,
                                              setup.lan_data),
                        'torch': _torch_runner(peer)},
                       repeats=repeats, min_run_s=min_run_s)
      r = {'setup': name, 'batch_size': b, 'num_samples': k,
           'torch_threads': threads, 'torch_version': torch.__version__,
           'flops': flops,
           'lanjax_step_s': t['lanjax']['step_s'],
           'torch_step_s': t['torch']['step_s'],
           'lanjax_examples_per_s': b / t['lanjax']['step_s'],
           'torch_examples_per_s': b / t['torch']['step_s'],
           'ratio': t['torch']['step_s'] / t['lanjax']['step_s'],
           'ratio_best_runs': (t['torch']['step_s_min']
                               / t['lanjax']['step_s_min']),
           'lanjax_cpu_s': t['lanjax']['cpu_s'],
           'torch_cpu_s': t['torch']['cpu_s'],
           'ratio_cpu': t['torch']['cpu_s'] / t['lanjax']['cpu_s'],
           'lanjax_fraction_of_matmul_rate': (
               flops / t['lanjax']['step_s'] / peak_flops),
           'torch_fraction_of_matmul_rate': (
               flops / t['torch']['step_s'] / peak_flops),
           'steps_per_run': {n: v['steps_per_run'] for n, v in t.items()}}
      print(f'[bench] peer {name} K={k} B={b}: lanjax '
            f'{r["lanjax_examples_per_s"]:,.0f} vs torch '
            f'{r["torch_examples_per_s"]:,.0f} examples/s '
            f'({r["ratio"]:.2f}x)', flush=True)
      out.append(r)
  return out


# ----------------------------------------------------------------------------
# Explanations per second: every attribution method on each experiment's F.


def _time_call(fn, *args, repeats: int, budget_s: float) -> float:
  """Median seconds of ``fn(*args)`` (compiled and warmed up first); stops
  repeating once ``budget_s`` is spent (slow methods run once or twice)."""
  jax.block_until_ready(fn(*args))
  times, spent = [], 0.0
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
    spent += times[-1]
    if spent > budget_s:
      break
  return _median(times)


def bench_explanations(names, *, batch_size: int, lan_batch_size: int,
                       repeats: int, budget_s: float, lan_steps: int,
                       methods=None) -> list[dict]:
  """Explanations per second of every method of `lanjax.attribution.METHODS`
  on each experiment's F, and the time to train its A.

  Each method as the experiment's evaluation builds it
  (`skeleton.explainers`, with the task's noise, beta and mask shape) at
  the library's default settings (`lanjax.config.base_config`: integrated
  gradients 50 steps, SmoothGrad 50 samples, occlusion 4x4 windows at
  stride 2, RISE 500 masks, eq. 3 optimised per example for 100 steps of 8
  samples), jitted as one call on ``batch_size`` examples; the LAN's masks
  are A's forward pass on ``lan_batch_size`` examples. A's training time is
  the experiment's LAN step (its default K and batch) times its
  ``config.lan.num_steps``, timed over ``lan_steps`` steps.
  """
  import importlib  # pylint: disable=g-import-not-at-top
  from lanjax import attribution  # pylint: disable=g-import-not-at-top
  from lanjax import config as config_lib  # pylint: disable=g-import-not-at-top
  from lanjax.experiments import get_experiment  # pylint: disable=g-import-not-at-top
  from lanjax.experiments import skeleton  # pylint: disable=g-import-not-at-top
  out = []
  for name in names:
    config = importlib.import_module(f'configs.{name}').get_config(None)
    config.unlock() if hasattr(config, 'unlock') else None
    defaults = config_lib.base_config(name).eval.method_settings
    config.eval.method_settings = defaults
    config.eval.methods = tuple(methods or attribution.METHODS)
    module = importlib.import_module(f'lanjax.experiments.{name}')
    if hasattr(module, 'scored_config'):  # F is no classifier (Pong)
      config = module.scored_config(config)
    experiment = get_experiment(config.experiment)
    data = experiment.synthetic_data(config)
    task = experiment.tasks(config, data)[0]
    f_graphdef, f_state = skeleton.initial_state(task.make_f, config.f)
    lan_graphdef, lan_state = skeleton.initial_state(task.make_lan, config.lan)
    f_apply, a_apply = (skeleton.apply_fn(f_graphdef),
                        skeleton.apply_fn(lan_graphdef))
    f_params, a_params = f_state['params'], lan_state['params']
    trained = skeleton.Trained(
        f=functools.partial(f_apply, f_params),
        a=functools.partial(a_apply, a_params), f_apply=f_apply,
        f_params=f_params, lan_params=a_params, f_step=0, lan_step=0)
    mask_shape = config.lan.get('mask_shape', None)
    explain = skeleton.explainers(config, task, trained, mask_shape)
    xs = jnp.concatenate([
        task.lan_batch(task.train_data, jax.random.key(i))
        for i in range(-(-max(batch_size, lan_batch_size)
                         // config.lan.batch_size))])
    x, x_lan = xs[:batch_size], xs[:lan_batch_size]
    # A's training time: its step at the default K and batch.
    r = time_update(skeleton.lan_update(config, task, f_graphdef,
                                        lan_graphdef),
                    lan_state, skeleton.lan_data(task, f_params),
                    steps_per_run=lan_steps, repeats=3, warmup_s=0.0)
    train_s = r['step_s'] * config.lan.num_steps
    entry = {'setup': name, 'batch_size': batch_size,
             'lan_batch_size': lan_batch_size,
             'lan_num_steps': int(config.lan.num_steps),
             'lan_step_s': r['step_s'], 'lan_training_s': train_s,
             'methods': {}}
    for method, fn in explain.items():
      xb = x_lan if method == 'lan' else x
      if method == 'lan':  # A's forward pass: 1 - A(x)
        call = jax.jit(lambda p, a, x, key: 1.0 - a_apply(a, x))
      else:
        call = jax.jit(lambda p, a, x, key, fn=fn: fn(
            functools.partial(f_apply, p), x, key))
      try:
        t = _time_call(call, f_params, a_params, xb, jax.random.key(0),
                       repeats=repeats, budget_s=budget_s)
      except Exception as e:  # pylint: disable=broad-except
        entry['methods'][method] = {'error': f'{type(e).__name__}: {e}'[:300]}
        print(f'[bench] explain {name} {method}: {e!r}'[:300], flush=True)
        continue
      try:
        flops = _cost(call.lower(f_params, a_params, xb, jax.random.key(0))
                      .compile())['flops'] / xb.shape[0]
      except Exception:  # pylint: disable=broad-except
        flops = float('nan')
      entry['methods'][method] = {
          'flops_per_explanation': flops,
          'seconds_per_call': t, 'examples': int(xb.shape[0]),
          'per_s': xb.shape[0] / t,
          'settings': {k: v for k, v in dict(
              defaults.get(method, {})).items()}}
      print(f'[bench] explain {name} {method}: '
            f'{xb.shape[0] / t:,.1f} explanations/s', flush=True)
    lan = entry['methods'].get('lan', {})
    for other in ('integrated_gradients', 'smoothgrad'):
      o = entry['methods'].get(other, {})
      if lan.get('per_s') and o.get('per_s'):
        entry[f'lan_over_{other}'] = lan['per_s'] / o['per_s']
        # The ratio of work: IG (SmoothGrad) is n gradients of F, the LAN
        # one forward pass of A (XLA's FLOPs of one gradient and of A; XLA
        # counts a loop body once, so the methods' own counts are too low).
        n = defaults[other].get('num_steps', defaults[other].get(
            'num_samples'))
        g = entry['methods'].get('gradient', {}).get('flops_per_explanation')
        if g:
          entry[f'work_{other}_over_lan'] = (
              n * g / lan['flops_per_explanation'])
    out.append(entry)
  return out


# ----------------------------------------------------------------------------
# Where XLA spends a step: a profiler trace, op by op.


def _hlo_ops(hlo_text: str) -> dict:
  """``{op name: (shape, JAX op_name)}`` from a compiled module's HLO text."""
  import re  # pylint: disable=g-import-not-at-top
  ops = {}
  for m in re.finditer(r'^\s*(?:ROOT )?%?([\w.\-]+) = ([^ ]+) .*?'
                       r'(?:op_name="([^"]*)")?', hlo_text, re.M):
    line_end = hlo_text.find('\n', m.start())
    line = hlo_text[m.start():line_end]
    op_name = re.search(r'op_name="([^"]*)"', line)
    ops.setdefault(m.group(1), (m.group(2), op_name.group(1) if op_name
                                else ''))
  return ops


def profile_step(update, state, data, *, steps: int, top: int = 12) -> dict:
  """Op-by-op time of a jitted step from a `jax.profiler` trace.

  Sums the durations of XLA's ops (thunks) over the XLA:CPU threads, per
  op, over ``steps`` steps; each op is named with its HLO shape and the JAX
  operation it comes from. On a loaded machine thread times include waits,
  so the shares are more telling than the milliseconds.

  Returns:
    ``{'op_ms_per_step', 'ops': [{'op', 'share', 'ms_per_step', 'shape',
    'jax_op'}, ...]}``, the ``top`` ops by time.
  """
  import collections  # pylint: disable=g-import-not-at-top
  import glob  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  step = training.jit(update, donate_argnums=0)
  state = jax.tree.map(jnp.copy, state)
  rng = jax.random.key(0)
  hlo = _hlo_ops(step.lower(state, data, rng).compile().as_text())
  for i in range(3):
    state, _ = step(state, data, jax.random.fold_in(rng, i))
  jax.block_until_ready(state)
  with tempfile.TemporaryDirectory() as where:
    with jax.profiler.trace(where):
      for i in range(steps):
        state, _ = step(state, data, jax.random.fold_in(rng, i))
      jax.block_until_ready(state)
    path = glob.glob(os.path.join(where, '**', '*.xplane.pb'),
                     recursive=True)[0]
    profile = jax.profiler.ProfileData.from_file(path)
    total = collections.Counter()
    for plane in profile.planes:
      for line in plane.lines:
        if 'XLAEigen' not in line.name:
          continue
        for ev in line.events:
          if not ev.name.startswith('ThunkExecutor'):
            total[ev.name] += ev.duration_ns
  all_ns = sum(total.values()) or 1
  ops = []
  for name, ns in total.most_common(top):
    shape, jax_op = hlo.get(name, ('', ''))
    ops.append({'op': name, 'share': ns / all_ns,
                'ms_per_step': ns / 1e6 / steps, 'shape': shape,
                'jax_op': jax_op.replace('jit(update)/', '')})
  return {'op_ms_per_step': all_ns / 1e6 / steps, 'steps': steps, 'ops': ops}


# What the profile showed on this project's 2-core CPU (2026-11-23, jax
# 0.10.2); rendered under the profile tables of results.md.
PROFILE_FINDINGS = """\
Findings (2-core CPU, jax 0.10.2; traces of the LAN step, `profile_step`).
2026-12-07, Pong (K = 8, batch 32, before the fix): 70% of the op time was
convolutions XLA:CPU runs outside its fast kernels (YNNPACK): the
decoder's transposed convolutions (`lax.conv_transpose`: a convolution of
the stride-dilated input, 35%) and the input gradients of every strided
convolution (convolutions of a dilated cotangent, 35%). Fix
(`lanjax.models.conv_ops`, every model's convolutions): a transposed
convolution is one stride-1 convolution with s x s times the output
channels, one group per output phase, and a depth-to-space rearrangement
(sub-pixel convolution); a strided convolution keeps XLA's strided forward
pass and takes its gradients from the space-to-depth form (stride-1
convolutions; kernels that are multiples of the stride use that form
forward too); all gradients are stride-1 convolutions in canonical
layouts. Same values and gradients (tests/test_conv_ops.py). Pong's LAN
step at K = 8 went from 63 to 141 examples/s, CIFAR-10's from about 107
to 141 (interleaved runs, quiet machine). Second finding, every
convolutional F (translated MNIST, SDC, CIFAR-10, Pong) at K = 8 and 32:
evaluating F on one noise sample of the batch at a time (64-128 inputs)
ran 1.1-2x faster per evaluation than on 1,024 inputs at once (their
activations stay in the caches; translated MNIST K = 8: 6,614 vs 3,230
examples/s); `cpu_max_inputs` is now 64 (20 Newsgroups, one large matrix
product, keeps 1,024). Third: several steps per call (`fori_loop`,
`steps_per_dispatch`) made `training.fit` 1.1-1.4x faster on the CPU too,
now the default. Earlier (2026-11-23, translated MNIST): the second
convolution (10 -> 20 channels) runs at ~6 GFLOP/s of thread time, far
below the matmul rate, with too few channels for YNNPACK's micro-kernels;
the first runs as one matrix product over its 16-wide patches (im2col).
What remains on SDC at K = 1 (lanjax 0.5-0.6x torch): half the op time is
the kernel gradient of the convolutional A's strided convolutions (a
convolution with the batch contracted, ~16-20 GFLOP/s). One matrix product
per kernel tap computes it 1.8-2.2x faster alone (the layer's shapes, jitted
by itself), but inside the step XLA materialises each tap's shifted slice of
the input first (nine copies per layer), which cost what the products saved
(interleaved: 7.9 vs 8.0 steps/s); not kept. Later the same day: the
optimiser step of `training.apply_gradients` had selected between the new
and the old parameters and Adam state element-wise (its non-finite guard),
~21% of Pong's K = 1 op time; it now runs inside a `lax.cond` on the loss
and the gradient norm being finite (Pong K = 1 1.13x, SDC 1.05x,
translated MNIST 1.07x, interleaved; compiled with the state donated, as
`fit` runs it, the step's temporaries fell too, e.g. Pong K = 256 chunked by
8: 174 -> 125 MiB). Pong at K = 8 (1.1x torch) now spends 35% of its op time
in F's convolutions (YNNPACK), 5% in one broadcast to (chunks, B, samples
per chunk, 64, 64, 3) kept for the backward pass of the corruption, and 5%
making the bootstrap noise (gathering frames, scaling them to [0, 1])."""


def bench_profile(*, ks, steps: int, batch_size: Optional[int] = None) -> dict:
  """`profile_step` of translated MNIST's LAN step at each K and F's step."""
  setup = SETUPS['translated_mnist']()
  b = batch_size or setup.batch_size
  out = {}
  for k in ks:
    out[f'lan_k{k}'] = profile_step(setup.lan_update(b, k), setup.lan_state,
                                    setup.lan_data, steps=steps)
    out[f'lan_k{k}']['what'] = f'LAN step, K={k}, batch {b}'
  out['f'] = profile_step(setup.f_update(b), setup.f_state, setup.f_data,
                          steps=steps)
  out['f']['what'] = f'F step, batch {b}'
  return out


# ----------------------------------------------------------------------------
# The run.

PLANS = {
    'full': dict(ks=(1, 8, 32), batch_sizes=(32, 64, 128, 256, 512),
                 k_for_batch_sweep=8, mask_batches=(128, 1024, 8192),
                 steps_per_run=10, repeats=7, warmup_s=1.0, matmul_n=1024,
                 untiled_k=32,
                 memory=dict(batch_size=8, num_samples=256,
                             chunk_sizes=(None, 32, 8)),
                 peers=dict(ks=(1, 8, 32), repeats=3, min_run_s=0.6),
                 explain=dict(batch_size=32, lan_batch_size=1024, repeats=3,
                              budget_s=5.0, lan_steps=10),
                 profile=dict(ks=(1, 8), steps=20)),
    'quick': dict(ks=(1, 4), batch_sizes=(16,), k_for_batch_sweep=4,
                  untiled_k=None,
                  mask_batches=(256,), steps_per_run=2, repeats=2,
                  warmup_s=0.0,
                  matmul_n=256, batch_size=32,
                  # Compiled only: the full plan's sizes cost no run time.
                  memory=dict(batch_size=8, num_samples=256,
                              chunk_sizes=(None, 32)),
                  peers=dict(ks=(1, 2), repeats=2, min_run_s=0.02,
                             batch_size=16, names=('translated_mnist',)),
                  explain=dict(batch_size=2, lan_batch_size=64, repeats=1,
                               budget_s=1.0, lan_steps=2,
                               names=('translated_mnist',),
                               methods=('lan', 'gradient',
                                        'integrated_gradients',
                                        'smoothgrad')),
                  profile=dict(ks=(1,), steps=2, batch_size=16)),
}


SECTIONS = ('lan', 'peers', 'explain', 'memory', 'profile')


def run(plan: str = 'full', setups=None, sections=SECTIONS) -> dict:
  """Runs the ``sections`` of ``plan`` and returns the results pytree.

  Sections: ``'lan'`` (the LAN step, F's step and A's inference of every
  setup of `SETUPS`), ``'peers'`` (each experiment's LAN step against its
  PyTorch peer, when torch imports), ``'memory'``.
  """
  p = PLANS[plan]
  results = {
      'schema_version': SCHEMA_VERSION,
      'plan': plan,
      'sections': list(sections),
      'date': datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec='seconds'),
      'machine': {
          'backend': jax.default_backend(),
          'devices': [str(d) for d in jax.devices()],
          'device_kind': jax.devices()[0].device_kind,
          'cpu_count': os.cpu_count(),
          'platform': platform.platform(),
          'python': platform.python_version(),
          'jax': jax.__version__,
          'load_average_start': list(os.getloadavg()) if hasattr(
              os, 'getloadavg') else None,
          'compiler_options': training.compiler_options(),
      },
  }
  mm = matmul_rate(p['matmul_n'], repeats=max(p['repeats'], 5) * 4)
  results['matmul'] = mm
  peak = mm['flops_per_s']
  results['setups'] = {}
  lan_setups = [n for n in (setups or SETUPS) if n in SETUPS]
  for name in (lan_setups if 'lan' in sections else ()):
    print(f'[bench] {name}: building', flush=True)
    setup = SETUPS[name]()
    b0 = p.get('batch_size', setup.batch_size)
    kw = dict(steps_per_run=p['steps_per_run'], repeats=p['repeats'],
              warmup_s=p['warmup_s'], peak_flops=peak)
    lan_k = []
    for k in p['ks']:
      r = bench_lan(setup, batch_size=b0, num_samples=k, chunk_size=None, **kw)
      print(f'[bench] {name} LAN step K={k} B={b0}: '
            f'{r["examples_per_s"]:.0f} examples/s, '
            f'{r["us_per_f_eval"]:.1f} us per F-eval', flush=True)
      lan_k.append(r)
    if jax.default_backend() == 'cpu' and p.get('untiled_k'):
      k = p['untiled_k']
      r = bench_lan(setup, batch_size=b0, num_samples=k, chunk_size=None,
                    cpu_max_inputs=None, **kw)
      r['variant'] = 'no CPU tiling'
      print(f'[bench] {name} LAN step K={k} B={b0} without CPU tiling: '
            f'{r["us_per_f_eval"]:.1f} us per F-eval', flush=True)
      lan_k.append(r)
    lan_b = []
    for b in p['batch_sizes']:
      r = bench_lan(setup, batch_size=b, num_samples=p['k_for_batch_sweep'],
                    chunk_size=None, **kw)
      print(f'[bench] {name} LAN step K={p["k_for_batch_sweep"]} B={b}: '
            f'{r["examples_per_s"]:.0f} examples/s', flush=True)
      lan_b.append(r)
    entry = {'default_batch_size': b0, 'lan_by_k': lan_k, 'lan_by_batch': lan_b}
    if setup.f_update is not None:
      entry['f_train'] = bench_f(setup, batch_size=b0, **kw)
      print(f'[bench] {name} F step B={b0}: '
            f'{entry["f_train"]["examples_per_s"]:.0f} examples/s', flush=True)
    entry['a_inference'] = [
        bench_masks(setup, batch_size=b, repeats=p['repeats'])
        for b in p['mask_batches']]
    print(f'[bench] {name} A inference: ' + ', '.join(
        f'{r["masks_per_s"]:.0f} masks/s (B={r["batch_size"]})'
        for r in entry['a_inference']), flush=True)
    results['setups'][name] = entry
  if 'peers' in sections:
    if torch_available():
      q = dict(p['peers'])
      names = q.pop('names', None) or [
          n for n in (setups or PEER_SETUPS) if n in PEER_SETUPS]
      results['peers'] = bench_peers(names, q.pop('ks'), peak_flops=peak,
                                     **q)
    else:
      print('[bench] peers skipped: torch is not installed (pip install -r '
            'benchmarks/requirements.txt)', flush=True)
      results['peers'] = None
  if 'explain' in sections:
    q = dict(p['explain'])
    names = q.pop('names', None) or [
        n for n in (setups or PEER_SETUPS) if n in PEER_SETUPS]
    results['explanations'] = bench_explanations(names, **q)
  if 'profile' in sections:
    print('[bench] profile of the translated-MNIST steps', flush=True)
    results['profile'] = bench_profile(**p['profile'])
  if 'memory' in sections:
    print('[bench] memory of the Pong LAN step', flush=True)
    results['memory'] = bench_memory(**p['memory'])
  results['machine']['load_average_end'] = list(os.getloadavg()) if hasattr(
      os, 'getloadavg') else None
  results['targets'] = targets(results)
  return results


def targets(results) -> list[dict]:
  """The issue's targets, checked on this run's numbers."""
  out = []
  mnist = results['setups'].get('translated_mnist')
  if mnist:
    by_k = {r['num_samples']: r for r in mnist['lan_by_k']
            if r.get('variant', 'default') == 'default'}
    base = by_k[min(by_k)]
    for k, r in sorted(by_k.items()):
      if k == min(by_k):
        continue
      for what in ('us_per_f_eval', 'cpu_us_per_f_eval'):
        ratio = r[what] / base[what]
        out.append({
            'target': f'cost per F-eval at K={k} <= at K={min(by_k)} '
                      f'({what.replace("_", " ")})',
            'value': ratio, 'unit': 'ratio', 'passed': bool(ratio <= 1.0)})
    if 1 in by_k and by_k[1]['batch_size'] == 128:
      v = by_k[1]['examples_per_s']
      out.append({'target': 'translated MNIST LAN step at K=1, batch 128 >= '
                            '20,000 examples/s',
                  'value': v, 'unit': 'examples/s', 'passed': v >= 20_000})
    best = max(r['masks_per_s'] for r in mnist['a_inference'])
    out.append({'target': "A's inference >= 100,000 masks/s",
                'value': best, 'unit': 'masks/s', 'passed': best >= 100_000})
    share = max(r['input_pipeline_share'] for r in mnist['lan_by_k'])
    out.append({'target': 'input pipeline (batch + noise) share of the step '
                          '< 0.25',
                'value': share, 'unit': 'share', 'passed': share < 0.25})
  recompiles = sum(
      r['recompiles'] for s in results.get('setups', {}).values()
      for r in s['lan_by_k'] + s['lan_by_batch'] + (
          [s['f_train']] if 'f_train' in s else []))
  out.append({'target': 'no recompilation in the steady state',
              'value': recompiles, 'unit': 'compiles', 'passed': recompiles == 0})
  for r in results.get('peers') or ():
    out.append({'target': f'{r["setup"]} LAN step at K={r["num_samples"]}, '
                          f'batch {r["batch_size"]}: >= 2x PyTorch eager',
                'value': r['ratio'], 'unit': 'lanjax / torch',
                'passed': bool(r['ratio'] >= 2.0)})
    out.append({'target': f'{r["setup"]} LAN step at K={r["num_samples"]}: '
                          '>= 30% of the f32 matmul rate',
                'value': r['lanjax_fraction_of_matmul_rate'],
                'unit': 'of matmul rate',
                'passed': bool(r['lanjax_fraction_of_matmul_rate'] >= 0.3)})
  for e in results.get('explanations') or ():
    for other, want in (('integrated_gradients', 1000), ('smoothgrad', 100)):
      v = e.get(f'lan_over_{other}')
      if v is not None:
        out.append({'target': f'{e["setup"]}: LAN masks/s >= {want:,}x '
                              f'{other.replace("_", " ")} maps/s',
                    'value': v, 'unit': 'ratio', 'passed': bool(v >= want)})
  mem = {r['chunk_size']: r['temp_size_in_bytes']
         for r in results.get('memory') or ()}
  if None in mem and len(mem) > 1:
    smallest = min(v for k, v in mem.items() if k is not None)
    out.append({'target': 'chunking lowers the temporary memory of K='
                          f'{results["memory"][0]["num_samples"]}',
                'value': smallest / mem[None], 'unit': 'ratio to unchunked',
                'passed': smallest < mem[None]})
  return out


# ----------------------------------------------------------------------------
# Report.


def _fmt(v, digits=0):
  return f'{v:,.{digits}f}'


def markdown(results) -> str:
  """The results as Markdown tables (benchmarks/results.md)."""
  m = results['machine']
  mm = results['matmul']
  median_rate = 2 * mm['n'] ** 3 / mm.get('median_seconds', mm['seconds'])
  lines = [
      '# lanjax benchmarks', '',
      f'`python benchmarks/run.py{" --quick" if results["plan"] == "quick" else ""}`'
      f' on {m["backend"]} ({m["device_kind"]}, {len(m["devices"])} '
      f'device(s), {m["cpu_count"]} CPU cores), jax {m["jax"]}, '
      f'{results["date"]}. Load average at start/end: '
      f'{m["load_average_start"]} / {m["load_average_end"]} (the machine may '
      'be shared: wall times are noisy; ratios and CPU times less so).', '',
      *([f'Sections re-run later (`--merge`): ' + '; '.join(
          f'{", ".join(r["sections"])} on {r["date"]} (load average '
          f'{[round(v, 1) for v in r["load_average_start"]]} / '
          f'{[round(v, 1) for v in r["load_average_end"]]})'
          for r in results['merged_runs']) + '.', '']
        if results.get('merged_runs') else []),
      f'Matmul yardstick: f32 {mm["n"]}x{mm["n"]} at '
      f'**{mm["flops_per_s"] / 1e9:.1f} GFLOP/s** (the fastest call; '
      f'median {median_rate / 1e9:.1f}).',
      '',
      'Timings: median over runs of chained jitted steps (state donated, as '
      'in `training.fit`), each run closed by `block_until_ready`; "best run" '
      'is the fastest run (what the machine does when nothing else runs). '
      "FLOPs from XLA's cost analysis of the compiled step; CPU = process CPU "
      'time per step (all threads). CPU tiling: `lan_update` evaluates F on at '
      'most this many corrupted inputs at once on CPU (chunks of noise '
      'samples; `cpu_max_inputs`), "off" shows the untiled cost.', '']
  for name, s in results['setups'].items():
    lines += [f'## {name}', '',
              f'### LAN step by K (batch size {s["default_batch_size"]})', '']
    lines += _lan_table(s['lan_by_k'])
    lines += ['', f'### LAN step by batch size '
              f'(K = {s["lan_by_batch"][0]["num_samples"]})', '']
    lines += _lan_table(s['lan_by_batch'])
    if 'f_train' in s:
      f = s['f_train']
      lines += ['', '### F training step (`training.classifier_update`)', '',
                '| batch | examples/s | ms/step | CPU ms/step | GFLOP/s | '
                'of matmul rate | compile s | recompiles |',
                '|---:|---:|---:|---:|---:|---:|---:|---:|',
                f'| {f["batch_size"]} | {_fmt(f["examples_per_s"])} | '
                f'{f["step_s"] * 1e3:.2f} | {f["cpu_s_per_step"] * 1e3:.2f} | '
                f'{f["flops_per_s"] / 1e9:.1f} | '
                f'{f["fraction_of_matmul_rate"]:.0%} | {f["compile_s"]:.1f} | '
                f'{f["recompiles"]} |']
    lines += ['', "### A's inference (one forward pass, batched)", '',
              '| batch | masks/s |', '|---:|---:|']
    lines += [f'| {r["batch_size"]} | {_fmt(r["masks_per_s"])} |'
              for r in s['a_inference']]
    lines.append('')
  if results.get('peers'):
    r0 = results['peers'][0]
    lines += ['## lanjax against the same step in PyTorch', '',
              'Each experiment\'s LAN step (`training.lan_update` as the '
              'experiment builds it) against the same step written in plain '
              f'PyTorch {r0["torch_version"]} eager (`benchmarks/torch_peers.py`'
              ': the same networks with the same parameters, F frozen, A '
              'trained with Adam, K bootstrapped noise samples per example '
              'evaluated as one batch, batch and noise drawn inside the '
              f'step), torch on {r0["torch_threads"]} threads. Runs of the two '
              'interleaved (medians; "best" = ratio of the fastest runs; '
              '"CPU" = ratio of process CPU time per step, all threads, less '
              'sensitive to other processes\' load). % of matmul rate: XLA\'s '
              'FLOP count of the step over its time.', '',
              '| experiment | K | batch | lanjax examples/s | torch examples/s '
              '| lanjax / torch | best runs | CPU | lanjax % of matmul rate | '
              'torch % |',
              '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
    for r in results['peers']:
      lines.append(
          f'| {r["setup"]} | {r["num_samples"]} | {r["batch_size"]} | '
          f'{_fmt(r["lanjax_examples_per_s"])} | '
          f'{_fmt(r["torch_examples_per_s"])} | **{r["ratio"]:.2f}x** | '
          f'{r["ratio_best_runs"]:.2f}x | {r["ratio_cpu"]:.2f}x | '
          f'{r["lanjax_fraction_of_matmul_rate"]:.0%} | '
          f'{r["torch_fraction_of_matmul_rate"]:.0%} |')
    lines.append('')
  if results.get('explanations'):
    lines += ['## Explanations per second', '',
              'Every method of `lanjax.attribution.METHODS` on each '
              'experiment\'s F (synthetic inputs of the dataset\'s shapes, '
              'untrained networks: the cost does not depend on the values), '
              'as its evaluation builds it, at the library\'s default '
              'settings (integrated gradients 50 steps, SmoothGrad 50 '
              'samples, occlusion 4x4 windows at stride 2, RISE 500 masks, '
              'eq. 3 optimised per example for 100 steps of 8 samples), one '
              'jitted call per batch (of '
              f'{results["explanations"][0]["batch_size"]} examples; the '
              f'LAN\'s of {results["explanations"][0]["lan_batch_size"]}). '
              'LAN = A\'s forward pass (masks/s); '
              'the others maps/s. "A training" = the LAN step at the '
              'experiment\'s default K and batch times its '
              '`config.lan.num_steps`.', '']
    methods = list(dict.fromkeys(
        m for e in results['explanations'] for m in e['methods']))
    lines += ['| experiment | ' + ' | '.join(methods) + ' | A training s '
              '| LAN / IG | LAN / SmoothGrad | FLOPs: 50 gradients of F / A |',
              '|---|' + '---:|' * (len(methods) + 4)]
    for e in results['explanations']:
      cells = []
      for m in methods:
        r = e['methods'].get(m, {})
        cells.append(f'{r["per_s"]:,.1f}' if 'per_s' in r else
                     ('error' if 'error' in r else ''))
      ig = e.get('lan_over_integrated_gradients')
      sg = e.get('lan_over_smoothgrad')
      lines.append(f'| {e["setup"]} | ' + ' | '.join(cells) +
                   f' | {e["lan_training_s"]:,.0f} | '
                   f'{"" if ig is None else f"{ig:,.0f}x"} | '
                   f'{"" if sg is None else f"{sg:,.0f}x"} | '
                   f'{e.get("work_integrated_gradients_over_lan", 0):,.0f}x |')
    errors = [(e['setup'], m, r['error']) for e in results['explanations']
              for m, r in e['methods'].items() if 'error' in r]
    for setup, m, err in errors:
      lines.append(f'\n{setup} / {m}: {err}')
    lines.append('')
  if results.get('memory'):
    lines += ['## Memory: many noise samples on 64x64x3 inputs', '',
              "Pong's LAN step (appendix D: conv autoencoder F, squared error, "
              'FC(500) A with a tiled 64x64x1 mask, bootstrap noise), compiled '
              "only, the state donated as `training.fit` compiles it; XLA's memory "
              'analysis.', '',
              '| K | batch | chunk size | temporaries MiB | total MiB | '
              'arguments MiB | outputs MiB |',
              '|---:|---:|---:|---:|---:|---:|---:|']
    for r in results['memory']:
      lines.append(
          f'| {r["num_samples"]} | {r["batch_size"]} | '
          f'{r["chunk_size"] or "none"} | '
          f'{r["temp_size_in_bytes"] / 2 ** 20:,.1f} | '
          f'{r["total_bytes"] / 2 ** 20:,.1f} | '
          f'{r["argument_size_in_bytes"] / 2 ** 20:,.1f} | '
          f'{r["output_size_in_bytes"] / 2 ** 20:,.1f} |')
    lines += ['', 'Temporaries: the step\'s own intermediates (F\'s activations '
              'for the corrupted copies, the K x B noise draw itself). '
              'They include the new parameters and Adam state the optimiser '
              'step writes before they replace the donated ones. Arguments '
              'and outputs: A\'s parameters and Adam state, the data; total '
              'counts the donated outputs once.']
  if results.get('profile'):
    lines += ['', '## Where XLA:CPU spends the translated-MNIST steps', '',
              'A `jax.profiler` trace of the jitted step (`profile_step`): '
              'time of each XLA op summed over the XLA:CPU threads, its '
              'share of all op time, its HLO shape and the JAX operation it '
              'comes from (`jvp` = forward, `transpose(jvp)` = backward).']
    for prof in results['profile'].values():
      lines += ['', f'### {prof["what"]}: {prof["op_ms_per_step"]:.2f} ms of '
                'op time per step', '',
                '| op | share | ms/step | shape | JAX op |',
                '|---|---:|---:|---|---|']
      lines += [f'| {o["op"]} | {o["share"]:.0%} | {o["ms_per_step"]:.2f} | '
                f'`{o["shape"]}` | {o["jax_op"]} |' for o in prof['ops']]
    if results['plan'] == 'full':
      lines += ['', PROFILE_FINDINGS]
  lines += ['', '## Targets', '', '| target | value | passed |',
            '|---|---:|:---:|']
  for t in results['targets']:
    v = t['value']
    shown = (f'{v:,.0f} {t["unit"]}' if t['unit'] in (
        'examples/s', 'masks/s', 'compiles') else
             f'{v:.0%} {t["unit"]}' if t['unit'].startswith('of ') else
             f'{v:.2f} ({t["unit"]})')
    lines.append(f'| {t["target"]} | {shown} | '
                 f'{"yes" if t["passed"] else "**no**"} |')
  return '\n'.join(lines) + '\n'


def _lan_table(rows):
  out = ['| K | batch | CPU tiling | examples/s | best run | F-evals/s | '
         'us/F-eval | CPU us/F-eval | ms/step | GFLOP/s | of matmul rate | '
         'batch+noise share | compile s | recompiles |',
         '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|'
         '---:|']
  for r in rows:
    tiling = r.get('cpu_max_inputs')
    tiling = ('n/a' if jax.default_backend() != 'cpu' else
              f'{tiling} inputs' if tiling else 'off')
    out.append(
        f'| {r["num_samples"]} | {r["batch_size"]} | {tiling} | '
        f'{_fmt(r["examples_per_s"])} | '
        f'{_fmt(r["examples_per_s_best_run"])} | {_fmt(r["f_evals_per_s"])} | '
        f'{r["us_per_f_eval"]:.1f} | {r["cpu_us_per_f_eval"]:.1f} | '
        f'{r["step_s"] * 1e3:.2f} | {r["flops_per_s"] / 1e9:.1f} | '
        f'{r["fraction_of_matmul_rate"]:.0%} | '
        f'{r["input_pipeline_share"]:.0%} | {r["compile_s"]:.1f} | '
        f'{r["recompiles"]} |')
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--quick', action='store_true',
                      help='a seconds-long smoke run (small sizes)')
  parser.add_argument('--out', default=os.path.join(_ROOT, 'benchmarks'),
                      help='directory for results.json and results.md')
  parser.add_argument('--setups', nargs='*', default=None,
                      help=f'setups to run (default: all of {list(SETUPS)}; '
                           f'for the peers, of {list(PEER_SETUPS)})')
  parser.add_argument('--sections', nargs='*', default=list(SECTIONS),
                      choices=SECTIONS,
                      help='sections to run (default: all)')
  parser.add_argument('--ks', nargs='*', type=int, default=None,
                      help='noise sample counts K of the peer rows (default: '
                           'the plan\'s, 1 8 32)')
  parser.add_argument('--merge', action='store_true',
                      help='update the sections run in an existing '
                           'results.json of --out, keep the others')
  args = parser.parse_args(argv)
  unknown = set(args.setups or ()) - set(SETUPS) - set(PEER_SETUPS)
  if unknown:
    parser.error(f'unknown setups {sorted(unknown)}; known: {list(SETUPS)}')
  if args.ks:
    PLANS['quick' if args.quick else 'full']['peers']['ks'] = tuple(args.ks)
  results = run('quick' if args.quick else 'full', setups=args.setups,
                sections=tuple(args.sections))
  old = os.path.join(args.out, 'results.json')
  if args.merge and os.path.exists(old):
    with open(old) as fh:
      merged = json.load(fh)
    keys = {'lan': ['setups'], 'peers': ['peers'],
            'explain': ['explanations'], 'memory': ['memory'],
            'profile': ['profile']}
    for section in args.sections:
      for key in keys[section]:
        merged[key] = results.get(key)
    merged['sections'] = sorted(set(merged.get('sections', ())) |
                                set(args.sections))
    merged.setdefault('merged_runs', []).append(
        {'sections': list(args.sections), 'date': results['date'],
         'load_average_start': results['machine']['load_average_start'],
         'load_average_end': results['machine']['load_average_end']})
    merged['targets'] = targets(merged)
    results = merged
  os.makedirs(args.out, exist_ok=True)
  io.write_json(os.path.join(args.out, 'results.json'), results)
  table = markdown(results)
  io.write_text(os.path.join(args.out, 'results.md'), table)
  print(table, flush=True)
  return results


if __name__ == '__main__':
  main()
