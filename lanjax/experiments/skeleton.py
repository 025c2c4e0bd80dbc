"""One shape for every experiment: load data once, train or load F, fit A,
restore the trained pair, evaluate, write ``metrics.json``.

An experiment module writes only what is its own and hands it to the shared
steps here as plain data:

* `Experiment`: how to load the data (once per command), how to build its
  `Task` s from the config and the data, how to evaluate a trained task and how
  to summarise the tasks (claims, combined figures);
* `Task`: one black box F and its LAN A, e.g. one input domain of translated
  MNIST: the networks' factories, the data the in-step batch functions read,
  the noise H, F's test metrics for its learning curve, L_F.

`run` (``train.py``) and `evaluate` (``evaluate.py``) do the rest, the same
way for every experiment:

* train F on its task (`training.classifier_update` or the task's own update)
  or load it from ``config.f.init_from`` (explain an existing F);
* fit A on the frozen F (`training.lan_update` with the options of
  ``config.lan``, `lan_options`) and record which F it explains;
* restore both from their checkpoints (`restore`) into a `Trained` pair whose
  ``f`` and ``a`` are plain callables for `lanjax.attribution` and
  `lanjax.metrics`;
* write each task's metrics, F's learning curve and the summary.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable, Optional

import jax
import ml_collections
import optax
from flax import nnx

from lanjax import io
from lanjax import losses as losses_lib
from lanjax import training

Config = ml_collections.ConfigDict


@dataclasses.dataclass(frozen=True)
class Task:
  """One black box F and its LAN A, with what training them reads.

  Attributes:
    name: the task's name and its sub-directory of the work dir (e.g. a
      domain of translated MNIST); ``''`` for an experiment with one task.
    make_f: ``() -> nnx.Module``, F freshly initialised from the config's seed.
    make_lan: ``() -> nnx.Module``, A freshly initialised.
    train_data: the pytree of arrays the batch functions read.
    f_batch: ``f_batch(train_data, key) -> {'x', 'y'}``, F's training batch,
      made inside the jitted step.
    lan_batch: ``lan_batch(train_data, key) -> x``, A's training batch.
    noise: the noise distribution H (`lanjax.noise`).
    keys: ``(f_key, lan_key, eval_key)``, the task's root PRNG keys.
    f_forward: ``f_forward(model, x, key) -> output`` for an F that needs a key
      in training (dropout); None: ``model(x)``.
    f_loss: ``f_loss(output, batch) -> (B,)`` F's training loss per example;
      None: softmax cross-entropy with the integer labels ``batch['y']``.
    f_eval: ``f_eval(f) -> {name: scalar}``, F's test metrics (jit-safe, ``f``
      a callable ``x -> F(x)``), logged as F's learning curve; or None.
    output_loss: L_F of eq. (3), per example (`lanjax.losses`).
    curve_metric: the key of ``f_eval`` whose values make F's learning curve
      in the metrics (``f_learning_curve``).
  """
  name: str
  make_f: Callable[[], nnx.Module]
  make_lan: Callable[[], nnx.Module]
  train_data: Any
  f_batch: Callable
  lan_batch: Callable
  noise: Any
  keys: tuple
  f_forward: Optional[Callable] = None
  f_loss: Optional[Callable] = None
  f_eval: Optional[Callable] = None
  output_loss: Callable = losses_lib.softmax_cross_entropy
  curve_metric: str = 'accuracy'


@dataclasses.dataclass(frozen=True)
class Trained:
  """A trained task restored from its checkpoints.

  Attributes:
    f: ``x -> F(x)``, F in inference mode with its parameters bound.
    a: ``x -> A(x)``, the trained LAN.
    f_apply: ``(params, x) -> F(x)`` (for sanity checks on other parameters).
    f_params, lan_params: the parameters.
    f_step, lan_step: the steps of the checkpoints.
  """
  f: Callable
  a: Callable
  f_apply: Callable
  f_params: Any
  lan_params: Any
  f_step: int
  lan_step: int


@dataclasses.dataclass(frozen=True)
class Experiment:
  """An experiment: its data, its tasks and its evaluation.

  Attributes:
    name: the experiment's name (``config.experiment``).
    load_data: ``load_data(config) -> data``; called once per command.
    tasks: ``tasks(config, data) -> [Task, ...]``, in training order.
    evaluate: ``evaluate(config, data, task, trained, workdir) -> metrics``:
      one task's metrics (a JSON-able dict) and figures in ``workdir``.
    summarize: ``summarize(config, {task name: metrics}, workdir) -> dict``:
      what spans the tasks (claims, combined figures), merged into the
      summary; or None.
    describe: ``describe(config, data) -> str``, a line printed after the data
      are loaded; or None.
    synthetic_data: ``synthetic_data(config) -> data``: random data of the
      real data's layout, shapes and sizes, for benchmarks (`benchmarks/run.py`
      builds the experiment's steps from it without the dataset); or None.
  """
  name: str
  load_data: Callable[[Config], Any]
  tasks: Callable[[Config, Any], list]
  evaluate: Callable[..., dict]
  summarize: Optional[Callable[..., dict]] = None
  describe: Optional[Callable[[Config, Any], str]] = None
  synthetic_data: Optional[Callable[[Config], Any]] = None


# ----------------------------------------------------------------------------
# What every experiment builds the same way.


def optimizer(part: Config) -> optax.GradientTransformation:
  """Adam at ``part.learning_rate`` (``config.f`` or ``config.lan``)."""
  return optax.adam(part.learning_rate)


def lan_options(lan: Config) -> dict:
  """`training.lan_update`'s keyword arguments from ``config.lan``.

  Experiments and benchmarks alike build A's step from these, so every field
  that the README documents acts the same way for every config.
  """
  return dict(
      beta=float(lan.beta), num_samples=int(lan.num_samples),
      chunk_size=lan.get('chunk_size', 0) or None,
      chunk_memory=int(lan.get('chunk_memory_mb', 0) * 2 ** 20) or None,
      cpu_max_inputs=lan.get('cpu_max_inputs', 1024) or None,
      fidelity_budget=lan.get('fidelity_budget', 0.0) or None,
      beta_learning_rate=float(lan.get('beta_learning_rate', 0.02)))


def apply_fn(graphdef) -> Callable:
  """``(params, x) -> model(x)`` for an NNX graph definition."""
  return lambda params, x: nnx.merge(graphdef, params)(x)


def initial_state(make: Callable[[], nnx.Module], part: Config):
  """``(graphdef, state)``: a fresh network's definition and training state.

  For A with ``config.lan.fidelity_budget``, the state holds the adapted
  ``log_beta``, starting at ``config.lan.beta``.
  """
  graphdef, params = nnx.split(make(), nnx.Param)
  adaptive = part.get('fidelity_budget', 0.0)
  return graphdef, training.init_state(
      params, optimizer(part), beta=float(part.beta) if adaptive else None)


def task_dir(workdir: str, task: Task) -> str:
  return os.path.join(workdir, task.name) if task.name else workdir


def f_checkpoint_dir(config: Config, workdir: str, task: Task) -> str:
  """Where F's checkpoints are: this run's, or ``config.f.init_from``'s."""
  root = config.f.init_from or workdir
  return os.path.join(task_dir(root, task), 'checkpoints', 'f')


def lan_checkpoint_dir(workdir: str, task: Task) -> str:
  return os.path.join(task_dir(workdir, task), 'checkpoints', 'lan')


def f_update(config: Config, task: Task, graphdef, mesh=None) -> Callable:
  """F's training step on its task."""
  return training.classifier_update(
      graphdef, optimizer(config.f), task.f_batch, mesh=mesh,
      forward=task.f_forward, loss=task.f_loss)


def lan_update(config: Config, task: Task, f_graphdef, lan_graphdef,
               mesh=None) -> Callable:
  """A's training step on the frozen F (eq. 3), with ``config.lan``'s options.

  Its data must hold ``task.train_data``, ``'f_params'`` and ``'noise'``.
  """
  return training.lan_update(
      lan_graphdef, optimizer(config.lan), apply_fn(f_graphdef),
      task.lan_batch, output_loss=task.output_loss, mesh=mesh,
      **lan_options(config.lan))


def lan_data(task: Task, f_params) -> dict:
  """The data A's step reads: the task's data, F's parameters and H."""
  return {**task.train_data, 'f_params': f_params, 'noise': task.noise}


# ----------------------------------------------------------------------------
# Train, restore, evaluate.


def train_task(config: Config, task: Task, workdir: str, mesh=None):
  """Trains (or loads) F, then fits A on it; returns their final states.

  ``workdir`` is the run's directory; the task's files go to `task_dir`.
  """
  f_key, lan_key, _ = task.keys
  where = task_dir(workdir, task)
  f_graphdef, f_state = initial_state(task.make_f, config.f)
  training.check_divisible(config.f.batch_size, mesh)
  f_ckpt = f_checkpoint_dir(config, workdir, task)
  if config.f.init_from:  # explain an existing F: load it, don't train it
    f_state, _ = training.load_state(f_ckpt, f_state, what='F')
  else:
    f_apply = apply_fn(f_graphdef)
    f_eval = None
    if task.f_eval is not None:
      f_eval_jit = jax.jit(lambda p: task.f_eval(functools.partial(f_apply, p)))
      f_eval = lambda s: f_eval_jit(s['params'])
    f_state = training.fit(
        f_update(config, task, f_graphdef, mesh), f_state, task.train_data,
        rng=f_key, num_steps=config.f.num_steps, workdir=where, name='f',
        log_every=config.log_every, checkpoint_every=config.checkpoint_every,
        mesh=mesh, eval_fn=f_eval, eval_every=config.f.eval_every)

  lan_graphdef, lan_state = initial_state(task.make_lan, config.lan)
  training.check_divisible(config.lan.batch_size, mesh)
  lan_state = training.fit(
      lan_update(config, task, f_graphdef, lan_graphdef, mesh), lan_state,
      lan_data(task, f_state['params']), rng=lan_key,
      num_steps=config.lan.num_steps, workdir=where, name='lan',
      log_every=config.log_every, checkpoint_every=config.checkpoint_every,
      mesh=mesh)
  io.write_json(os.path.join(where, 'lan_explains.json'), {
      'f_checkpoint': os.path.abspath(f_ckpt), 'f_step': int(f_state['step']),
      'task': task.name})
  return f_state, lan_state


def restore(config: Config, task: Task, workdir: str) -> Trained:
  """The trained F and A of ``task`` in the run ``workdir`` (read only)."""
  f_graphdef, f_target = initial_state(task.make_f, config.f)
  lan_graphdef, lan_target = initial_state(task.make_lan, config.lan)
  f_state, f_step = training.load_state(
      f_checkpoint_dir(config, workdir, task), f_target, what='F')
  lan_state, lan_step = training.load_state(
      lan_checkpoint_dir(workdir, task), lan_target, what='the LAN A')
  f_apply, a_apply = apply_fn(f_graphdef), apply_fn(lan_graphdef)
  return Trained(
      f=functools.partial(f_apply, f_state['params']),
      a=functools.partial(a_apply, lan_state['params']), f_apply=f_apply,
      f_params=f_state['params'], lan_params=lan_state['params'],
      f_step=int(f_step), lan_step=int(lan_step))


def load(experiment: Experiment, config: Config):
  """The experiment's data, loaded once, and its tasks."""
  data = experiment.load_data(config)
  if experiment.describe is not None:
    print(experiment.describe(config, data), flush=True)
  return data, experiment.tasks(config, data)


def train(experiment: Experiment, config: Config, workdir: str, *,
          data=None, tasks=None) -> None:
  """Trains every task of the experiment (resumably)."""
  if tasks is None:
    data, tasks = load(experiment, config)
  mesh = training.make_mesh(config.num_devices or None)
  for task in tasks:
    if task.name:
      print(f'=== {experiment.name}, {task.name!r} ===', flush=True)
    train_task(config, task, workdir, mesh)


def evaluate(experiment: Experiment, config: Config, workdir: str, *,
             data=None, tasks=None) -> dict:
  """Evaluates every trained task; writes ``workdir/metrics.json``.

  Returns:
    With one unnamed task, its metrics (plus the summary's entries); else
    ``{'experiment', 'tasks': {name: metrics}, ...summary}``.
  """
  if tasks is None:
    data, tasks = load(experiment, config)
  results = {}
  for task in tasks:
    where = task_dir(workdir, task)
    trained = restore(config, task, workdir)
    m = {'experiment': experiment.name, **({'task': task.name} if task.name
                                           else {}),
         'f_step': trained.f_step, 'lan_step': trained.lan_step,
         **experiment.evaluate(config, data, task, trained, where)}
    m['f_learning_curve'] = training.read_metric(
        os.path.join(where, 'metrics_f.jsonl'), f'test_{task.curve_metric}')
    if task.name:
      io.write_json(os.path.join(where, 'metrics.json'), m)
    results[task.name] = m
  summary = {}
  if experiment.summarize is not None:
    summary = experiment.summarize(config, results, workdir) or {}
  if list(results) == ['']:
    out = {**results[''], **summary}
  else:
    out = {'experiment': experiment.name, 'tasks': results, **summary}
  io.write_json(os.path.join(workdir, 'metrics.json'), out)
  if 'claims' in out:
    print('claims:', out['claims'], flush=True)
  return out


def run(experiment: Experiment, config: Config, workdir: str) -> None:
  """``train.py``: loads the data once, trains, then evaluates if asked."""
  data, tasks = load(experiment, config)
  train(experiment, config, workdir, data=data, tasks=tasks)
  if config.get('evaluate_after_train', True):
    evaluate(experiment, config, workdir, data=data, tasks=tasks)
