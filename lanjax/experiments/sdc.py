"""SDC: is the mask right? (Pandey, Vashisht, Ramaswamy; sections 3, 4, 6.1).

A selective-dependence task (`lanjax.data.sdc`) knows the answer to "what
does F attend to": the label depends on one foreground segment ``i*`` only,
kept with every test instance and never shown to training. One task per black
box F of ``config.fs``:

* ``fcam``: the focus-classify attention model (`lanjax.models.FCAM`), with
  its own attention ``alpha(x)``, trained for accuracy only;
* ``cnn``: a plain CNN on the mosaic image (`lanjax.models.MosaicCNN`), no
  attention: the case LAN is for.

For each, the LAN A is fitted on the frozen F (a mask over the mosaic image,
or over the ``(m, d)`` input of the synthetic tasks), and A, ``alpha`` and
every method of ``config.eval.methods`` are scored against ``i*``: segment
importance = the map's mean over the segment; FT = the foreground segment
scores highest (`lanjax.sdc_metrics.focus_true`); the share of the (positive)
importance on the foreground; segment pointing game; segment deletion AUC;
plus the shared comparison (`skeleton.compare_methods`, with the foreground
segment as region). Writes ``sdc_table.md``, ``sdc_mosaics.png`` and
``metrics.json`` per task; the claims (with 95% bootstrap intervals) are the
issue's targets. Runs on `lanjax.experiments.skeleton`.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from lanjax import evaluation
from lanjax import io
from lanjax import metrics as metrics_lib
from lanjax import noise as noise_lib
from lanjax import sdc_metrics as sm
from lanjax.data import sdc as sdc_data
from lanjax.experiments import skeleton
from lanjax.models import FCAM, MosaicCNN

FS = ('fcam', 'cnn')

# The columns of the per-task table (rows: methods).
TABLE_COLUMNS = (
    ('ft', 'FT'), ('foreground_mass', 'mass in foreground'),
    ('segment_pointing_game', 'segment pointing game'),
    ('segment_deletion_auc', 'segment deletion AUC'),
    ('deletion_auc/noise', 'deletion AUC (noise)'),
    ('seconds_per_example', 's / explanation'))


# ----------------------------------------------------------------------------
# Data.


def is_synthetic(config) -> bool:
  return config.data.name == 'synthetic'


def check_config(config):
  """Clear errors for SDC settings that do not fit together."""
  d = config.data
  if len(tuple(d.fg_classes)) != d.num_classes and not is_synthetic(config):
    raise ValueError(
        f'config.data.num_classes is {d.num_classes} but config.data.'
        f'fg_classes has {len(tuple(d.fg_classes))} classes; the labels are '
        'the positions in fg_classes, so set num_classes to its length.')
  unknown = [f for f in config.fs if f not in FS]
  if unknown or not config.fs:
    raise ValueError(f'config.fs is {tuple(config.fs)}; choose black boxes '
                     f'among {FS}.')
  if is_synthetic(config) and 'cnn' in config.fs:
    raise ValueError("config.fs has 'cnn' but the synthetic task has flat "
                     "(m, d) segments; a CNN needs image segments: use "
                     "config.fs=('fcam',).")


def load_data(config) -> dict[str, Any]:
  """The task's splits, loaded once: synthetic or image SDC (with ``i*``)."""
  check_config(config)
  d = config.data
  if is_synthetic(config):
    out = sdc_data.make_synthetic(
        d.synthetic, num_train=d.num_train, num_test=d.num_test,
        num_segments=d.num_segments, seed=config.seed)
    k = out['spec']['means'].shape[0] - 1
    if k != d.num_classes:
      raise ValueError(f'config.data.synthetic={d.synthetic!r} has {k} '
                       f'classes but config.data.num_classes is '
                       f'{d.num_classes}.')
    return out
  out = sdc_data.load_image_sdc(
      d.name, fg_classes=tuple(d.fg_classes), num_train=d.num_train,
      num_test=d.num_test, num_segments=d.num_segments, seed=config.seed,
      data_dir=d.data_dir or None, manual_dir=d.manual_dir or None,
      download=d.download, train_limit=d.train_limit or None,
      test_limit=d.test_limit or None)
  shape = tuple(out['train']['images'].shape[1:])
  if shape != tuple(d.segment_shape):
    raise ValueError(f'{d.name} images have shape {shape} but config.data.'
                     f'segment_shape is {tuple(d.segment_shape)}; set it to '
                     f'{shape}.')
  return out


def synthetic_data(config, num_pool: int = 2_000):
  """Random data of `load_data`'s layout (for benchmarks)."""
  d = config.data
  if is_synthetic(config):
    return load_data(config)
  rng = np.random.default_rng(0)
  labels = np.arange(num_pool, dtype=np.int32) % 10
  out = {}
  for j, (split, num) in enumerate((('train', d.num_train),
                                    ('test', d.num_test))):
    images = rng.integers(0, 256, (num_pool, *d.segment_shape), np.uint8)
    out[split] = {'images': images, 'labels': labels,
                  **sdc_data.make_mosaic_indices(
                      labels, fg_classes=tuple(d.fg_classes), num=num,
                      num_segments=d.num_segments, seed=j)}
  return out


def describe(config, data) -> str:
  n_tr, n_te = (data[s]['y'].shape[0] for s in ('train', 'test'))
  what = (f'synthetic {config.data.synthetic!r}' if is_synthetic(config)
          else f'{config.data.name}-SDC')
  return (f'SDC {what}: {n_tr} train / {n_te} test instances, m = '
          f'{config.data.num_segments}, k = {config.data.num_classes}; F: '
          f'{", ".join(config.fs)}')


def grid(config):
  """``g`` for mosaic images, None for flat (synthetic) inputs."""
  return None if is_synthetic(config) else sdc_data.grid_size(
      config.data.num_segments)


def input_shape(config) -> tuple[int, ...]:
  d = config.data
  if is_synthetic(config):
    return (d.num_segments, *d.segment_shape)
  s, t, c = d.segment_shape
  g = grid(config)
  return (g * s, g * t, c)


def test_set(config, data, n=None):
  """The first ``n`` test instances ``{'x', 'y', 'fg'}`` (fixed)."""
  n = min(n or config.eval.num_examples, data['test']['y'].shape[0])
  return sdc_data.instances(data['test'], 0, n)


# ----------------------------------------------------------------------------
# Networks and tasks.


def make_f(config, kind: str) -> nnx.Module:
  """The black box F called ``kind`` (`FS`)."""
  d = config.data
  if kind == 'fcam':
    c = config.f.fcam
    return FCAM(tuple(d.segment_shape), num_segments=d.num_segments,
                num_classes=d.num_classes, focus_hidden=tuple(c.focus_hidden),
                classifier_hidden=tuple(c.classifier_hidden),
                conv_features=tuple(c.conv_features), attention=c.attention,
                average_at=c.average_at, rngs=nnx.Rngs(config.seed))
  if kind == 'cnn':
    c = config.f.cnn
    return MosaicCNN(input_shape(config), features=tuple(c.features),
                     hidden=tuple(c.hidden), num_classes=d.num_classes,
                     rngs=nnx.Rngs(config.seed))
  raise ValueError(f'Unknown black box {kind!r}; expected one of {FS}.')


def make_lan(config) -> nnx.Module:
  """A of ``config.lan.arch`` (`skeleton.make_lan`) over the mosaic."""
  return skeleton.make_lan(config.lan, input_shape(config),
                           mask_shape=tuple(config.lan.mask_shape),
                           seed=config.seed + 1)


def make_noise(config, data):
  """H: background-only mosaics, random training instances, or a constant.

  ``config.lan.noise``:

  * ``'background'``: every segment drawn from the background distribution
    D_0: mosaics of background-class images (`sdc_data.background_indices`),
    or Gaussian D_0 draws for the synthetic task. Uses the task's
    construction (which classes are background), never an instance's i*.
  * ``'bootstrap'``: random training instances; each holds one
    foreground-class segment, so a corrupted background segment becomes a
    foreground-class one with probability 1/m, and keeping only the
    foreground under this H keeps F's prediction on only ~2/3 of MNIST-SDC
    mosaics (measured: README, "Is the mask right?").
  * ``'constant'``: ``config.lan.noise_value`` everywhere.
  """
  train = data['train']
  if config.lan.noise == 'background':
    if 'images' in train:
      idx = sdc_data.background_indices(
          train['labels'], fg_classes=tuple(config.data.fg_classes),
          num=train['idx'].shape[0], num_segments=config.data.num_segments,
          seed=config.seed + 2)
      return sdc_data.MosaicNoise(jnp.asarray(train['images']),
                                  jnp.asarray(idx))
    spec = data['spec']
    return noise_lib.GaussianNoise(jnp.asarray(spec['means'][0]),
                                   jnp.asarray(spec['stds'][0]))
  if config.lan.noise == 'bootstrap':
    if 'images' in train:
      return sdc_data.MosaicNoise(jnp.asarray(train['images']),
                                  jnp.asarray(train['idx']))
    return noise_lib.BootstrapNoise(jnp.asarray(train['x']))
  return noise_lib.make_noise(config.lan.noise, value=config.lan.noise_value)


def task_keys(config, kind):
  root = jax.random.key(config.seed)
  return tuple(jax.random.split(jax.random.fold_in(root, FS.index(kind)), 3))


def fcam_training(config):
  """``(forward, loss)`` of the entropy-regularised FCAM, or ``(None, None)``.

  With ``config.f.fcam.entropy_weight = w > 0`` F is trained on
  ``CE(logits, y) + w * Ent(alpha)`` (section 5 of the paper).
  """
  w = float(config.f.fcam.entropy_weight)
  if w <= 0:
    return None, None
  forward = lambda model, x, key: model.attend(x)
  loss = lambda out, batch: (optax.softmax_cross_entropy_with_integer_labels(
      out['logits'], batch['y']) + w * sm.entropy(out['alpha']))
  return forward, loss


def make_task(config, data, kind: str) -> skeleton.Task:
  """F of kind ``kind``, its LAN A, and what training them reads."""
  train = {k: jnp.asarray(v) for k, v in data['train'].items()
           if k in ('images', 'idx', 'x', 'y', 'fg')}
  test = test_set(config, data, config.eval.f_eval_examples)

  def f_batch(d, key):
    b = sdc_data.sample_batch(d, key, config.f.batch_size)
    return {'x': b['x'], 'y': b['y']}

  def lan_batch(d, key):
    return sdc_data.sample_batch(d, key, config.lan.batch_size)['x']

  def f_eval(f):
    return {'accuracy': (jnp.argmax(f(test['x']), -1) == test['y']).mean()}

  forward, loss = (fcam_training(config) if kind == 'fcam'
                   else (None, None))
  return skeleton.Task(
      name=kind, make_f=lambda: make_f(config, kind),
      make_lan=lambda: make_lan(config), train_data=train, f_batch=f_batch,
      lan_batch=lan_batch, noise=make_noise(config, data),
      keys=task_keys(config, kind), f_forward=forward, f_loss=loss,
      f_eval=f_eval)


def tasks(config, data) -> list[skeleton.Task]:
  check_config(config)
  return [make_task(config, data, kind) for kind in config.fs]


# ----------------------------------------------------------------------------
# Evaluation.


def _batched(fn, *arrays, size=250):
  """``fn`` over chunks of the leading axis, outputs concatenated."""
  n = arrays[0].shape[0]
  outs = [fn(*(a[i:i + size] for a in arrays)) for i in range(0, n, size)]
  return jax.tree.map(lambda *v: jnp.concatenate(v), *outs)


def segment_report(config, f, x, fg, importance) -> dict:
  """Per-example scores of one map against the ground truth ``fg``.

  Returns:
    ``{'ft', 'ft_random_ties', 'foreground_mass', 'segment_pointing_game',
    'segment_deletion_auc'}``, each ``(N,)``; ``segment_deletion_auc`` is F's
    probability of its clean prediction as whole segments are replaced by 0,
    most important first (lower is better).
  """
  g = grid(config)
  imp = jnp.asarray(importance)
  if g is None:  # flat maps (B, m) or (B, m, d): one score per segment
    seg = imp.reshape(imp.shape[0], imp.shape[1], -1).mean(-1)
    point_map = imp
  else:
    if imp.ndim == 2:  # alpha: one value per segment -> pixels
      seg = imp
    else:
      seg = sm.segment_scores(imp.mean(-1) if imp.ndim == 4 else imp, grid=g)
    point_map = imp.mean(-1) if imp.ndim == 4 else imp
  if imp.ndim == 2:
    point_map = seg if g is None else jnp.repeat(jnp.repeat(
        seg.reshape(-1, g, g), x.shape[1] // g, 1), x.shape[2] // g, 2)
  _, auc = sm.segment_deletion_curve(f, x, seg, grid=g)
  return {
      'ft': sm.focus_true(seg, fg, ties=config.eval.ft_ties),
      'ft_random_ties': sm.focus_true(seg, fg, ties='random'),
      'foreground_mass': sm.foreground_mass(jnp.maximum(seg, 0), fg),
      'segment_pointing_game': sm.segment_pointing_game(point_map, fg,
                                                        grid=g),
      'segment_deletion_auc': auc,
  }


def fcam_model(task, trained):
  """The trained FCAM as a module (for ``attend``)."""
  graphdef, _ = nnx.split(task.make_f(), nnx.Param)
  return nnx.merge(graphdef, trained.f_params)


def alpha_explainer(task, grid_g):
  """``explain(f, x, key)``: the trained FCAM's own alpha as a map.

  Fixed to the trained parameters (alpha is F's own account; the cascading
  randomisation check does not apply to it).
  """
  graphdef, _ = nnx.split(task.make_f(), nnx.Param)

  def make(params):
    def explain(f, x, key):
      del f, key
      alpha = nnx.merge(graphdef, params).alpha(x)
      if grid_g is None:
        return jnp.broadcast_to(alpha[..., None], x.shape)
      s, t = x.shape[1] // grid_g, x.shape[2] // grid_g
      a = alpha.reshape(-1, grid_g, grid_g)
      return jnp.repeat(jnp.repeat(a, s, 1), t, 2)[..., None]
    return explain
  return make


def mask_segments(config, mask):
  """A's mask ``(B, *mask_shape)`` -> its mean per segment, ``(B, m)``."""
  g = grid(config)
  if g is None:
    return mask.reshape(mask.shape[0], mask.shape[1], -1).mean(-1)
  return sm.segment_scores(mask.mean(-1) if mask.ndim == 4 else mask, grid=g)


def mask_spread(seg, fg) -> dict:
  """How A's mask spreads over segments (its diagnosis on SDC).

  Args:
    seg: ``(N, m)`` A's mean mask per segment (1: corrupted).
    fg: ``(N,)`` the foreground segments.

  Returns:
    ``mask_mean`` (all pixels), ``mask_foreground`` and ``mask_background``
    (the mean mask on the foreground segment and on the others: A finds the
    foreground when the first is lower), and ``mask_input_dependence``: the
    standard deviation over inputs of a segment's mask, averaged over
    segments (0: one input-independent mask for every mosaic).
  """
  n, m = seg.shape
  on_fg = seg[np.arange(n), fg]
  return {'mask_mean': float(seg.mean()),
          'mask_foreground': float(on_fg.mean()),
          'mask_background': float(((seg.sum(1) - on_fg) / (m - 1)).mean()),
          'mask_input_dependence': float(seg.std(0).mean())}


def _ci(values, config):
  mean, low, high = metrics_lib.bootstrap_ci(
      np.asarray(values, np.float64), num=config.eval.num_bootstrap)
  return {'mean': mean, 'low': low, 'high': high}


def dependence_checks(config, task, f, x, fg, key) -> dict:
  """Does F depend on the foreground only? (per example, ``(N,)``).

  ``keeps_prediction_foreground_only``: F's prediction unchanged when every
  background segment is replaced by noise H; ``changes_without_foreground``:
  changed when the foreground segment alone is replaced.
  """
  shape = x.shape[1:-1] if grid(config) is not None else x.shape[1:]
  region = sm.foreground_region(fg, shape, grid=grid(config))
  if grid(config) is not None:
    region = region[..., None]
  eta = task.noise.sample(key, x, 1)[0]
  clean = jnp.argmax(f(x), -1)
  fg_only = jnp.argmax(f(jnp.where(region, x, eta)), -1)
  no_fg = jnp.argmax(f(jnp.where(region, eta, x)), -1)
  return {'keeps_prediction_foreground_only': (fg_only == clean).astype(
      jnp.float32),
          'changes_without_foreground': (no_fg != clean).astype(jnp.float32)}


def evaluate_task(config, data, task, trained, workdir) -> dict:
  """Accuracy, FT of alpha / LAN / every method, the table, figure, claims."""
  from lanjax.experiments import figures  # pylint: disable=g-import-not-at-top
  g = grid(config)
  kind = task.name
  test = test_set(config, data)
  x, y, fg = test['x'], test['y'], test['fg']
  n = int(x.shape[0])
  f = jax.jit(trained.f)
  a = jax.jit(trained.a)
  logits = _batched(f, x)
  correct = np.asarray(jnp.argmax(logits, -1) == y, np.float32)
  m = {'f': kind, 'num_test_examples': n,
       'f_test_accuracy': float(correct.mean()),
       'num_segments': int(config.data.num_segments),
       'ft_ties': config.eval.ft_ties}

  # LAN (and alpha) on every evaluated test instance: cheap, amortized.
  report = functools.partial(segment_report, config, f)
  lan_imp = lambda xb: 1.0 - a(xb)
  lan = _batched(lambda xb, fb: report(xb, fb, lan_imp(xb)), x, fg)
  mask_seg = np.asarray(_batched(lambda xb: mask_segments(config, a(xb)), x))
  m['lan'] = {k: float(np.mean(v)) for k, v in lan.items()}
  m['lan'].update(mask_spread(mask_seg, np.asarray(fg)))
  m['lan']['ft_when_f_correct'] = float(
      np.asarray(lan['ft'])[correct > 0].mean()) if correct.any() else None
  m['lan']['ft_when_f_wrong'] = float(
      np.asarray(lan['ft'])[correct == 0].mean()) if (correct == 0).any(
      ) else None
  dep = _batched(functools.partial(
      dependence_checks, config, task, f,
      key=jax.random.fold_in(task.keys[2], 3)), x, fg)
  m['f_dependence'] = {k: float(np.mean(v)) for k, v in dep.items()}
  alpha_all = None
  if kind == 'fcam':
    model = fcam_model(task, trained)
    alpha_all = _batched(jax.jit(model.alpha), x)
    al = _batched(lambda xb, fb, ab: report(xb, fb, ab), x, fg, alpha_all)
    sparsity = sm.attention_sparsity(alpha_all)
    m['alpha'] = {k: float(np.mean(v)) for k, v in al.items()}
    m['alpha'].update({k: float(np.mean(v)) for k, v in sparsity.items()})
    m['alpha']['foreground_alpha_above'] = dict(zip(
        (str(t) for t in config.eval.alpha_thresholds),
        np.asarray(sm.foreground_alpha_above(
            alpha_all, fg, jnp.asarray(config.eval.alpha_thresholds))
                   ).tolist()))
    m['alpha']['focus_predict'] = {
        k: float(np.mean(v)) for k, v in sm.focus_predict_breakdown(
            alpha_all, fg, logits, y).items()}

  # Every method on the same examples: the shared comparison (deletion /
  # insertion under H, blur, mean; localisation on the foreground segment;
  # sanity; time), then the segment scores of each method's maps.
  table, per_method = None, {}
  nc = min(config.eval.compare_examples, n)
  if nc:
    xc, fgc = x[:nc], fg[:nc]
    shape = x.shape[1:-1] if g is not None else x.shape[1:]
    region = sm.foreground_region(fgc, shape, grid=g)
    mask_shape = tuple(config.lan.mask_shape)
    table = skeleton.compare_methods(config, task, trained, xc,
                                     workdir=workdir, region=region,
                                     mask_shape=mask_shape)
    explain = skeleton.explainers(config, task, trained, mask_shape)
    key = jax.random.fold_in(task.keys[2], 11)
    if kind == 'fcam':
      # alpha as one more row, by the same protocol (no sanity cascade).
      alpha_fn = alpha_explainer(task, g)(trained.f_params)
      extra = evaluation.compare(
          {'alpha': alpha_fn}, trained.f_apply, trained.f_params, xc,
          key=jax.random.fold_in(task.keys[2], 7),
          removals=skeleton.removals(config, task), region=region,
          num_steps=config.eval.curve_steps,
          batch_size=config.eval.compare_batch or None,
          num_bootstrap=config.eval.num_bootstrap)
      table['methods'] = {'alpha': extra['methods']['alpha'],
                          **table['methods']}
      table['curves'] = {'alpha': extra['curves']['alpha'],
                         **table['curves']}
      explain = {'alpha': alpha_fn, **explain}
    maps = {}
    size = config.eval.compare_batch or nc
    for name, fn in explain.items():
      jfn = jax.jit(lambda xb, k, fn=fn: fn(trained.f, xb, k))
      maps[name] = jnp.concatenate([
          jfn(xc[i:i + size], jax.random.fold_in(key, i))
          for i in range(0, nc, size)])
      per_method[name] = {k: _ci(v, config) for k, v in report(
          xc, fgc, maps[name]).items()}
      row = table['methods'].get(name, {})
      for col in ('deletion_auc/noise', 'seconds_per_example'):
        if col in row:
          per_method[name][col] = row[col]
    m['comparison'] = table
    m['segment_comparison'] = per_method
    md = markdown(per_method, kind, nc, config)
    io.write_text(os.path.join(workdir, 'sdc_table.md'), md + '\n')
    io.write_text(os.path.join(workdir, 'comparison.md'),
                  evaluation.markdown_table(table) + '\n')
    m['table_markdown'] = md

    nf = min(config.eval.num_figure_examples, nc)
    if nf and g is not None:
      figures.sdc_mosaics(
          np.asarray(xc[:nf]),
          {name: np.asarray(v[:nf]) for name, v in maps.items()},
          np.asarray(fgc[:nf]), g, os.path.join(workdir, 'sdc_mosaics.png'),
          title=f'{config.data.name}-SDC, F = {kind}: foreground dashed; '
                'maps of each method' + (" (alpha: the FCAM's own)"
                                         if kind == 'fcam' else ''),
          fg_labels=np.asarray(y[:nf]))
  if kind == 'fcam' and g is None and len(config.data.segment_shape) == 1 \
      and config.data.segment_shape[0] == 2:
    focus_landscape(config, data, fcam_model(task, trained),
                    os.path.join(workdir, 'sdc_focus_landscape.png'))

  # Claims, with 95% intervals over test instances; they fail on an
  # untrained or degenerate run (tests/test_sdc.py).
  claim = skeleton.claim
  lan_ft = np.asarray(lan['ft'])
  m['claims'] = {
      'f_is_accurate': claim(
          correct, above=0.9,
          statement=f'F ({kind}) classifies more than 90% of test mosaics '
                    'correctly'),
  }
  if kind == 'fcam':
    m['claims']['lan_ft_at_least_fcam_ft'] = claim(
        lan_ft - np.asarray(al['ft']), above=-0.02,
        statement='LAN\'s FT is at least the FCAM\'s own FT (paired over '
                  'test mosaics; non-inferiority margin 2 points)')
  else:
    m['claims']['lan_ft_at_least_0.9'] = claim(
        lan_ft, above=0.9,
        statement='on the plain CNN, the LAN\'s most important segment is '
                  'the foreground on over 90% of test mosaics')
  m['claims']['lan_finds_foreground'] = claim(
      lan_ft, above=0.5,
      statement='the LAN\'s most important segment is the foreground on most '
                'test mosaics (chance: 1/m)')
  m['definitions'] = {
      'ft': 'share of test instances whose foreground segment has the '
            'strictly highest mean importance (ties count as misses; '
            'ft_random_ties: 1/#tied)',
      'foreground_mass': 'share of the positive segment importance on the '
                         'foreground segment (1/m: no preference)',
      'segment_pointing_game': 'the single most important pixel lies in the '
                               'foreground segment',
      'segment_deletion_auc': 'F\'s probability of its clean prediction as '
                              'segments are set to 0, most important first '
                              '(lower: found what F needs sooner)',
      'f_dependence': 'F\'s prediction kept when only the foreground is '
                      'kept (the rest from H) / changed when only the '
                      'foreground is replaced from H',
  }
  return m


def markdown(per_method, kind, n, config) -> str:
  """The task's table: rows = methods, columns = `TABLE_COLUMNS`."""
  head = ['method', *(label for _, label in TABLE_COLUMNS)]
  rows = [f'F = {kind}, {n} test mosaics, mean [95% CI]', '',
          '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for name, values in per_method.items():
    cells = [name]
    for col, _ in TABLE_COLUMNS:
      v = values.get(col)
      if v is None:
        cells.append('')
      elif col == 'seconds_per_example':
        cells.append(f'{v["mean"]:.2g}')
      else:
        cells.append(f'{v["mean"]:.3f} [{v["low"]:.2f}, {v["high"]:.2f}]')
    rows.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(rows)


def focus_landscape(config, data, model, path):
  """Fig. 2a of the paper: the FCAM's focus score over the plane (d = 2)."""
  from lanjax.experiments import figures  # pylint: disable=g-import-not-at-top
  test = data['test']
  n = min(300, test['y'].shape[0])
  rows = np.arange(n)
  fgx = test['x'][rows, test['fg'][:n]]
  bgx = test['x'][rows, (test['fg'][:n] + 1) % config.data.num_segments]
  points = np.concatenate([bgx, fgx])
  labels = np.concatenate([np.zeros(n, int), test['y'][:n] + 1])
  lo, hi = points.min(0) - 1, points.max(0) + 1
  xs, ys = np.linspace(lo[0], hi[0], 80), np.linspace(lo[1], hi[1], 80)
  gx, gy = np.meshgrid(xs, ys)
  grid_pts = jnp.asarray(np.stack([gx.ravel(), gy.ravel()], -1), jnp.float32)
  _, scores = model.focus(grid_pts)
  figures.sdc_focus_landscape(
      points, labels, xs, ys, np.asarray(scores).reshape(gy.shape), path,
      title=f'focus net f of the FCAM ({config.data.synthetic})')


def summarize(config, results, workdir) -> dict:
  """Prints the tables and claims; collects the claims."""
  del workdir
  for kind, m in results.items():
    print(f'[{kind}] F test accuracy {m["f_test_accuracy"]:.4f}; LAN FT '
          f'{m["lan"]["ft"]:.3f}, mass in foreground '
          f'{m["lan"]["foreground_mass"]:.3f}, mask mean '
          f'{m["lan"]["mask_mean"]:.3f}' + (
              f'; alpha FT {m["alpha"]["ft"]:.3f}, NNZ {m["alpha"]["nnz"]:.2f}'
              f', Dist {m["alpha"]["dist"]:.3f}, Ent {m["alpha"]["ent"]:.3f}'
              if 'alpha' in m else ''), flush=True)
    if 'table_markdown' in m:
      print(m['table_markdown'], flush=True)
  return skeleton.report_claims(results)


EXPERIMENT = skeleton.Experiment(
    name='sdc', load_data=load_data, tasks=tasks, evaluate=evaluate_task,
    summarize=summarize, describe=describe, synthetic_data=synthetic_data)
