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
import numpy as np
import optax
from flax import nnx

from lanjax import attribution
from lanjax import evaluation
from lanjax import io
from lanjax import losses as losses_lib
from lanjax import metrics as metrics_lib
from lanjax import models
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
    train_data: the pytree of arrays the batch functions read, or a
      `training.Windows` of them (data larger than memory, read one window
      at a time; F's and A's runs each read a window for window size /
      batch size steps).
    f_batch: ``f_batch(train_data, key) -> {'x', 'y'}``, F's training batch,
      made inside the jitted step.
    lan_batch: ``lan_batch(train_data, key) -> x``, A's training batch.
    noise: the noise distribution H (`lanjax.noise`) of the evaluation, and
      of A's training unless ``noise_from_data`` is given.
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
    noise_from_data: ``noise_from_data(train_data) -> H``: A's training noise
      made from the data A's step reads (from each window where
      ``train_data`` is windowed), e.g. bootstrapped noise whose pool is the
      training examples' own device buffer; None: ``noise``.
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
  noise_from_data: Optional[Callable[[Any], Any]] = None


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
  """Adam at ``part.learning_rate`` (``config.f`` or ``config.lan``), held
  constant, or with ``part.lr_schedule = 'cosine'`` decayed to 0 over
  ``part.num_steps`` (`optax.cosine_decay_schedule`)."""
  schedule = part.get('lr_schedule', 'constant')
  if schedule == 'cosine':
    return optax.adam(optax.cosine_decay_schedule(
        float(part.learning_rate), int(part.num_steps)))
  return optax.adam(part.learning_rate)


def make_lan(lan: Config, input_shape, *, mask_shape=None,
             seed: int = 0) -> nnx.Module:
  """A fresh LAN A of ``config.lan.arch`` for inputs of ``input_shape``.

  ``'mlp'``: `lanjax.models.LatentAttentionNetwork` with ``lan.hidden``;
  ``'conv'`` (images): `lanjax.models.ConvLatentAttentionNetwork` with
  ``lan.conv_features`` and ``lan.conv_kernel``. ``mask_shape`` defaults to
  ``input_shape``.
  """
  arch = lan.get('arch', 'mlp')
  rngs = nnx.Rngs(seed)
  if arch == 'conv':
    return models.ConvLatentAttentionNetwork(
        input_shape, tuple(lan.conv_features), kernel_size=int(lan.conv_kernel),
        mask_shape=mask_shape, rngs=rngs)
  if arch == 'mlp':
    return models.LatentAttentionNetwork(input_shape, tuple(lan.hidden),
                                         mask_shape=mask_shape, rngs=rngs)
  raise ValueError(f"config.lan.arch must be 'mlp' or 'conv', got {arch!r}.")


def lan_options(lan: Config) -> dict:
  """`training.lan_update`'s keyword arguments from ``config.lan``.

  Experiments and benchmarks alike build A's step from these, so every field
  that the README documents acts the same way for every config.
  """
  return dict(
      beta=float(lan.beta), num_samples=int(lan.num_samples),
      chunk_size=lan.get('chunk_size', 0) or None,
      chunk_memory=int(lan.get('chunk_memory_mb', 0) * 2 ** 20) or None,
      cpu_max_inputs=lan.get('cpu_max_inputs', 64) or None,
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


def _sized(task: Task, batch_size, part: str):
  """``task.train_data``; windowed (`training.Windows`): the windows read
  for ``window size / batch_size`` steps each, refused (ValueError naming
  ``config.<part>.batch_size``) where the batch does not divide a window."""
  if isinstance(task.train_data, training.Windows):
    return task.train_data.for_batch(batch_size,
                                     what=f'config.{part}.batch_size')
  return task.train_data


def lan_data(task: Task, f_params, batch_size: Optional[int] = None):
  """The data A's step reads: the task's data, F's parameters and H.

  For windowed ``train_data`` (`training.Windows`), the same windows, each
  with F's parameters and H added, read for ``window size / batch_size``
  steps (``batch_size``: A's, required then).
  """
  def build(train):
    noise = (task.noise if task.noise_from_data is None
             else task.noise_from_data(train))
    return {**train, 'f_params': f_params, 'noise': noise}

  data = _sized(task, batch_size, 'lan')
  return data.map(build) if isinstance(data, training.Windows) else build(data)


def f_data(config: Config, task: Task):
  """The data F's step reads: ``task.train_data`` (windowed: a window is read
  for window size / ``config.f.batch_size`` steps)."""
  return _sized(task, config.f.batch_size, 'f')


# ----------------------------------------------------------------------------
# Train, restore, evaluate.


def train_task(config: Config, task: Task, workdir: str, mesh=None):
  """Trains (or loads) F, then fits A on it; returns their final states.

  ``workdir`` is the run's directory; the task's files go to `task_dir`.
  """
  f_key, lan_key, _ = task.keys
  where = task_dir(workdir, task)
  # Windows that do not fit a batch size are refused before anything runs.
  train_data = f_data(config, task)
  _sized(task, config.lan.batch_size, 'lan')
  f_graphdef, f_state = initial_state(task.make_f, config.f)
  training.check_divisible(config.f.batch_size, mesh)
  f_ckpt = f_checkpoint_dir(config, workdir, task)
  if config.f.init_from:  # explain an existing F: load it, don't train it
    f_state, _ = training.load_state(f_ckpt, f_state, what='F')
  else:
    f_apply = apply_fn(f_graphdef)
    f_eval = None
    if task.f_eval is not None:
      # The test set the task's f_eval closes over is an argument of the
      # compiled program, not a constant XLA folds at compile time.
      f_eval_jit = training.jit_hoisting_constants(
          lambda p: task.f_eval(functools.partial(f_apply, p)),
          f_state['params'])
      f_eval = lambda s: f_eval_jit(s['params'])
    f_state = training.fit(
        f_update(config, task, f_graphdef, mesh), f_state, train_data,
        rng=f_key, num_steps=config.f.num_steps, workdir=where, name='f',
        log_every=config.log_every, checkpoint_every=config.checkpoint_every,
        mesh=mesh, eval_fn=f_eval, eval_every=config.f.eval_every,
        steps_per_dispatch=config.get('steps_per_dispatch', 1))

  lan_graphdef, lan_state = initial_state(task.make_lan, config.lan)
  training.check_divisible(config.lan.batch_size, mesh)
  lan_state = training.fit(
      lan_update(config, task, f_graphdef, lan_graphdef, mesh), lan_state,
      lan_data(task, f_state['params'], config.lan.batch_size), rng=lan_key,
      num_steps=config.lan.num_steps, workdir=where, name='lan',
      log_every=config.log_every, checkpoint_every=config.checkpoint_every,
      mesh=mesh, steps_per_dispatch=config.get('steps_per_dispatch', 1))
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


# ----------------------------------------------------------------------------
# Is the mask right? Every attribution method on the same F, one protocol.


def explainers(config: Config, task: Task, trained: Trained,
               mask_shape=None) -> dict:
  """``{name: explain(f, x, key)}`` for ``config.eval.methods``.

  Each method takes its settings from ``config.eval.method_settings.<name>``;
  occlusion, RISE and the per-example mask optimisation corrupt with the
  task's own noise H, the mask optimisation optimises eq. (3) with the task's
  beta and L_F, and ``'lan'`` is ``1 - A(x)`` of the trained A.
  """
  out = {}
  for name in config.eval.methods:
    settings = dict(config.eval.method_settings.get(name, {}))
    if name == 'lan':
      settings['mask_fn'] = trained.a
    elif name in ('occlusion', 'rise'):
      settings.setdefault('noise', task.noise)
    elif name == 'mask_optimisation':
      settings.update(noise=task.noise, beta=float(config.lan.beta),
                      output_loss=task.output_loss)
      if mask_shape is not None:
        settings.setdefault('mask_shape', tuple(mask_shape))
    out[name] = attribution.explainer(name, **settings)
  return out


def removals(config: Config, task: Task) -> dict:
  """The removal operators of the deletion / insertion curves.

  ``'noise'`` is the task's own H (what A was trained against); ``'blur'``
  and ``'mean'`` are operators no method was trained on.
  """
  ops = {'noise': lambda: metrics_lib.removal_by_noise(task.noise),
         'blur': metrics_lib.removal_by_blur,
         'mean': metrics_lib.removal_by_mean}
  unknown = [r for r in config.eval.removals if r not in ops]
  if unknown:
    raise ValueError(f'config.eval.removals has unknown operators {unknown}; '
                     f'expected some of {sorted(ops)}.')
  return {r: ops[r]() for r in config.eval.removals}


def refit_lan(config: Config, task: Task, f_apply: Callable, f_params, *,
              num_steps: int, key) -> Callable:
  """A trained afresh for ``num_steps`` on another F (no checkpoints).

  For the sanity check of the amortized LAN: A explains one F, so on a
  randomised F the fair comparison is an A fitted to that F.

  Returns:
    ``x -> A(x)``.
  """
  lan_graphdef, state = initial_state(task.make_lan, config.lan)
  step = training.jit(training.lan_update(
      lan_graphdef, optimizer(config.lan), f_apply, task.lan_batch,
      output_loss=task.output_loss, **lan_options(config.lan)),
                      donate_argnums=0)
  data = lan_data(task, f_params, config.lan.batch_size)
  if isinstance(data, training.Windows):  # windowed data: its first window
    data = data.load(0, jax.device_put)
  for i in range(num_steps):
    state, _ = step(state, data, jax.random.fold_in(key, i))
  return functools.partial(apply_fn(lan_graphdef), state['params'])


def lan_training_seconds(where: str) -> Optional[float]:
  """A's training time from its log in the task's directory ``where``
  (the sum of the logged intervals over their step rates)."""
  rates = training.read_metric(os.path.join(where, 'metrics_lan.jsonl'),
                               'steps_per_sec')
  if not rates:
    return None
  seconds, last = 0.0, 0
  for step, rate in rates:
    if rate > 0 and step > last:
      seconds += (step - last) / rate
      last = step
  return seconds


def _randomize(config: Config) -> Callable:
  """F's randomised parameters for the sanity check.

  ``config.eval.sanity_cascade``: every step of the cascade (each layer
  re-initialised in turn, top first; one recomputation of every method per
  layer); else only the fully randomised F, which decides the verdict.
  """
  def randomize(params, key):
    cascade = evaluation.cascading_randomization(params, key)
    return cascade if config.eval.get('sanity_cascade', False) else cascade[-1:]
  return randomize


def compare_methods(config: Config, task: Task, trained: Trained, x, *,
                    workdir: str, region=None, score=None,
                    mask_shape=None) -> dict:
  """The comparison table of every method of ``config.eval.methods``.

  `lanjax.evaluation.compare` on F's test examples ``x``: deletion and
  insertion AUC under each removal operator, pointing game and mass in
  ``region`` where given, cascading randomisation of F's parameters (the
  LAN's row refits A on the fully randomised F for
  ``config.eval.sanity_lan_steps``), time per explanation, and for the LAN its
  training time and the number of explanations after which it is cheaper
  than each other method. Writes ``comparison.md`` and
  ``perturbation_curves.png`` into ``workdir``.

  Returns:
    The table (JSON-able), with ``'amortisation'``.
  """
  from lanjax.experiments import figures  # pylint: disable=g-import-not-at-top
  n = min(config.eval.compare_examples, x.shape[0])
  key = jax.random.fold_in(task.keys[2], 7)
  table = evaluation.compare(
      explainers(config, task, trained, mask_shape), trained.f_apply,
      trained.f_params, x[:n], key=key, removals=removals(config, task),
      region=None if region is None else region[:n],
      num_steps=config.eval.curve_steps,
      randomize=_randomize(config), score=score,
      batch_size=config.eval.compare_batch or None,
      num_bootstrap=config.eval.num_bootstrap)
  lan_row = table['methods'].get('lan')
  steps = config.eval.get('sanity_lan_steps', 0)
  if lan_row is not None and steps:
    _, randomised = evaluation.cascading_randomization(
        trained.f_params, jax.random.fold_in(key, 1))[-1]
    a_random = refit_lan(config, task, trained.f_apply, randomised,
                         num_steps=steps, key=jax.random.fold_in(key, 2))
    layer = [m for m in table['metrics'] if m.startswith('sanity_rank_corr/')]
    batches = np.array_split(np.arange(n), max(1, n // 50))
    random_maps = [metrics_lib.importance(a_random(x[b])) for b in batches]
    corr = np.concatenate([
        np.asarray(metrics_lib.rank_correlation(
            metrics_lib.importance(trained.a(x[b])), m))
        for b, m in zip(batches, random_maps)])
    mean, low, high = metrics_lib.bootstrap_ci(
        corr, num=config.eval.num_bootstrap)
    # A is amortised for one F: its maps on a partly randomised F would need
    # an A refit per cascade step. Only the fully randomised F is refit; the
    # other entries (A's maps unchanged, correlation 1 by construction) are
    # dropped rather than reported as failures.
    for name in layer:
      lan_row.pop(name, None)
    if layer:
      lan_row[layer[-1]] = {'mean': mean, 'low': low, 'high': high,
                            'note': f'A refit for {steps} steps on the fully '
                                    'randomised F'}
    lan_row['sanity_pass'] = bool(high < 0.5)
    spread = max(float(np.asarray(m).reshape(m.shape[0], -1).std(-1).max())
                 for m in random_maps)
    if spread < 1e-6:
      # The refit A's maps are constant: a rank correlation says nothing.
      lan_row['sanity_pass'] = None
      lan_row['sanity_note'] = ('not applicable: the A refit on the '
                                'randomised F gives constant maps')
  elif lan_row is not None and 'sanity_pass' in lan_row:
    # Not refit: A's maps on the randomised F are its maps on F (correlation
    # 1 by construction), which is no verdict on A.
    for name in [m for m in lan_row if m.startswith('sanity_rank_corr/')]:
      lan_row.pop(name)
    lan_row['sanity_pass'] = None
    lan_row['sanity_note'] = ('not run: config.eval.sanity_lan_steps = 0 (A '
                              'is amortised for one F; its check refits A '
                              'on the randomised F)')
  seconds = lan_training_seconds(workdir)  # the task's directory
  if lan_row is not None and seconds is not None:
    t_lan = lan_row['seconds_per_example']['mean']
    table['amortisation'] = {
        'lan_training_seconds': seconds,
        'break_even_explanations': {
            name: (seconds / (row['seconds_per_example']['mean'] - t_lan)
                   if row['seconds_per_example']['mean'] > t_lan else None)
            for name, row in table['methods'].items() if name != 'lan'},
    }
  io.write_text(os.path.join(workdir, 'comparison.md'),
                evaluation.markdown_table(table) + '\n')
  figures.perturbation_curves(
      table, os.path.join(workdir, 'perturbation_curves.png'))
  return table


# ----------------------------------------------------------------------------
# Claims that can fail.


def claim(values, *, above: float, statement: str, baseline=None,
          num_bootstrap: int = 1_000) -> dict:
  """A claim about a mean over test examples, with its effect size and CI.

  Holds when the lower end of the 95% bootstrap interval of
  ``mean(values) - mean(baseline)`` (or of ``mean(values)`` without a
  baseline) is above ``above``: a strict inequality with no margin would
  hold on an untrained F by noise alone. With a baseline the two samples
  are resampled independently (paired differences should be passed as
  ``values``).

  Returns:
    ``{'holds', 'effect', 'ci95', 'threshold', 'statement'}``.
  """
  v = np.asarray(values, np.float64).reshape(-1)
  if baseline is None:
    effect, low, high = metrics_lib.bootstrap_ci(v, num=num_bootstrap)
  else:
    b = np.asarray(baseline, np.float64).reshape(-1)
    rng = np.random.default_rng(0)
    diffs = (v[rng.integers(0, v.size, (num_bootstrap, v.size))].mean(-1)
             - b[rng.integers(0, b.size, (num_bootstrap, b.size))].mean(-1))
    effect = float(v.mean() - b.mean())
    low, high = (float(q) for q in np.quantile(diffs, [0.025, 0.975]))
  return {'holds': bool(low > above), 'effect': effect, 'ci95': [low, high],
          'threshold': float(above), 'statement': statement}


def report_claims(results: dict) -> dict:
  """Prints every task's claims; returns them for the summary.

  Args:
    results: ``{task name: metrics}`` whose ``'claims'`` are `claim` records.

  Returns:
    ``{'claims': {name: holds}, 'claims_detail': {name: record}}``, names
    prefixed with the task's (``'standard/blob_around_digit'``) where the
    task has one.
  """
  claims = {f'{task}/{name}' if task else name: c
            for task, m in results.items()
            for name, c in m.get('claims', {}).items()}
  for name, c in claims.items():
    print(f'claim {name}: {"HOLDS" if c["holds"] else "fails"} (effect '
          f'{c["effect"]:.4g}, 95% CI [{c["ci95"][0]:.4g}, '
          f'{c["ci95"][1]:.4g}], threshold {c["threshold"]:.4g})', flush=True)
  return {'claims': {name: c['holds'] for name, c in claims.items()},
          'claims_detail': claims}
