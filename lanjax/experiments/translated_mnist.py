"""Translated MNIST (Grimm et al., section 5.1, Fig. 2 and 3a-d, appendix A).

For each domain (``standard``: 12x12 digits anywhere on a 28x28 canvas;
``corner``: never in the bottom-right 12x12 region), train the classifier F,
then the LAN A on F with bootstrapped noise, then evaluate: figures and
``metrics.json`` in ``workdir/<domain>/`` and a summary in ``workdir``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from lanjax import io
from lanjax import metrics as metrics_lib
from lanjax import noise as noise_lib
from lanjax import training
from lanjax import validation
from lanjax.data import tfds_data
from lanjax.data import translated_mnist as tm
from lanjax.models import ConvClassifier, LatentAttentionNetwork

DOMAINS = ('standard', 'corner')


# ----------------------------------------------------------------------------
# Data.


@dataclasses.dataclass(frozen=True)
class Placement:
  """Static, hashable transform: place digits at random allowed positions."""
  canvas: int
  digit: int
  exclude_corner: int = 0

  @property
  def allowed(self):
    return tm.allowed_positions(self.canvas, self.digit,
                                exclude_corner=self.exclude_corner)

  def __call__(self, key, digits):
    return tm.sample(key, digits, self.allowed, self.canvas)[0]


def placement(config, domain: str) -> Placement:
  if domain not in DOMAINS:
    raise ValueError(f'Unknown domain {domain!r}; expected one of {DOMAINS}.')
  d = config.data
  return Placement(d.canvas, d.digit_size,
                   d.corner_size if domain == 'corner' else 0)


def load_mnist(config) -> dict[str, Any]:
  """MNIST train/test images in [0, 1] ``(N, 28, 28)`` and labels."""
  d = config.data
  out = {}
  for split, limit in (('train', d.train_limit or None),
                       ('test', d.test_limit or None)):
    arrays = tfds_data.load_arrays(
        d.name, split, ('image', 'label'), data_dir=d.data_dir or None,
        manual_dir=d.manual_dir or None, download=d.download, limit=limit)
    images = arrays['image'].astype(np.float32) / 255.0
    if images.ndim == 4:
      images = images[..., 0]
    low, high = d.get('value_range', (0.0, 1.0))
    validation.check_range(
        images, low=low, high=high, name=f'{d.name} {split} images',
        hint='The experiment expects images scaled to '
             f'config.data.value_range ({low}, {high}): check the data in '
             f'{d.data_dir or "$TFDS_DATA_DIR"}.')
    out[split] = {'images': images, 'labels': arrays['label'].astype(np.int32)}
  return out


def digits(config, mnist) -> dict[str, Any]:
  """The scaled-down digits: ``{split: {'digits', 'small', 'labels'}}``."""
  d = config.data
  return {split: {
      'digits': tm.resize_digits(v['images'], d.digit_size),
      'small': tm.resize_digits(v['images'], d.small_digit_size),
      'labels': jnp.asarray(v['labels'])} for split, v in mnist.items()}


# ----------------------------------------------------------------------------
# Networks.


def make_f(config) -> ConvClassifier:
  c = config.data.canvas
  return ConvClassifier((c, c, 1), features=tuple(config.f.features),
                        kernel_size=config.f.kernel_size,
                        stride=config.f.stride, num_classes=10,
                        rngs=nnx.Rngs(config.seed))


def make_lan(config) -> LatentAttentionNetwork:
  c = config.data.canvas
  return LatentAttentionNetwork((c, c, 1), tuple(config.lan.hidden),
                                rngs=nnx.Rngs(config.seed + 1))


def f_apply_fn(f_graphdef):
  return lambda params, x: nnx.merge(f_graphdef, params)(x)


def _tx(learning_rate):
  return optax.adam(learning_rate)


def _rngs(config, domain):
  root = jax.random.key(config.seed)
  domain_key = jax.random.fold_in(root, DOMAINS.index(domain))
  f_key, lan_key, eval_key = jax.random.split(domain_key, 3)
  return f_key, lan_key, eval_key


def _f_target_state(config):
  f = make_f(config)
  graphdef, params = nnx.split(f, nnx.Param)
  return graphdef, training.init_state(params, _tx(config.f.learning_rate))


def _lan_target_state(config):
  a = make_lan(config)
  graphdef, params = nnx.split(a, nnx.Param)
  return graphdef, training.init_state(params, _tx(config.lan.learning_rate))


# ----------------------------------------------------------------------------
# Training.


def f_checkpoint_dir(config, workdir, domain):
  """Where F's checkpoints are: this run's, or ``config.f.init_from``'s."""
  root = (os.path.join(config.f.init_from, domain) if config.f.init_from
          else workdir)
  return os.path.join(root, 'checkpoints', 'f')


def test_set(config, data, domain, key):
  """A fixed translated test set: ``{'x', 'y', 'corner'}`` (same every call)."""
  n = min(config.eval.num_examples, data['test']['digits'].shape[0])
  x, corner = tm.sample(key, data['test']['digits'][:n],
                        placement(config, domain).allowed, config.data.canvas)
  return {'x': x, 'y': data['test']['labels'][:n], 'corner': corner}


def f_batch_fn(config, allowed):
  """``f_batch(digits, key) -> {'x', 'y'}``: F's training batch, made in-step."""
  def f_batch(d, key):
    b = tm.sample_batch(key, d['digits'], d['labels'], config.f.batch_size,
                        allowed, config.data.canvas)
    return {'x': b['x'], 'y': b['y']}
  return f_batch


def lan_batch_fn(config, allowed):
  """``lan_batch(digits, key) -> x``: A's training batch, made in-step."""
  def lan_batch(d, key):
    return tm.sample_batch(key, d['digits'], d['labels'],
                           config.lan.batch_size, allowed,
                           config.data.canvas)['x']
  return lan_batch


def f_update(config, f_graphdef, allowed, mesh=None):
  """F's training step (`training.classifier_update`) on translated digits."""
  return training.classifier_update(
      f_graphdef, _tx(config.f.learning_rate), f_batch_fn(config, allowed),
      mesh=mesh)


def lan_update(config, f_graphdef, lan_graphdef, allowed, mesh=None):
  """A's training step (`training.lan_update`) on the frozen F.

  Its data must hold the training digits, ``'f_params'`` and ``'noise'``.
  """
  return training.lan_update(
      lan_graphdef, _tx(config.lan.learning_rate), f_apply_fn(f_graphdef),
      lan_batch_fn(config, allowed), beta=config.lan.beta,
      num_samples=config.lan.num_samples,
      chunk_size=config.lan.chunk_size or None,
      chunk_memory=int(config.lan.get('chunk_memory_mb', 0) * 2 ** 20) or None,
      cpu_max_inputs=config.lan.get('cpu_max_inputs', 1024) or None,
      mesh=mesh)


def train_domain(config, workdir, data, domain, mesh=None):
  """Trains F, then A, for one domain; returns their final states."""
  f_key, lan_key, eval_key = _rngs(config, domain)
  place = placement(config, domain)
  allowed = place.allowed
  test = test_set(config, data, domain, eval_key)
  train_digits = {'digits': data['train']['digits'],
                  'labels': data['train']['labels']}

  # F on its task.
  f_graphdef, f_state = _f_target_state(config)
  f_apply = f_apply_fn(f_graphdef)
  training.check_divisible(config.f.batch_size, mesh)

  @jax.jit
  def f_accuracy(params, x, y):
    return (jnp.argmax(f_apply(params, x), -1) == y).mean()

  if config.f.init_from:  # explain an existing F: load it, don't train it
    f_state, _ = training.load_state(
        f_checkpoint_dir(config, workdir, domain), f_state, what='F')
  else:
    f_state = training.fit(
        f_update(config, f_graphdef, allowed, mesh=mesh),
        f_state, train_digits, rng=f_key, num_steps=config.f.num_steps,
        workdir=workdir, name='f', log_every=config.log_every,
        checkpoint_every=config.checkpoint_every, mesh=mesh,
        eval_fn=lambda s: {'accuracy': f_accuracy(s['params'], test['x'],
                                                  test['y'])},
        eval_every=config.f.eval_every)

  # A on the frozen F.
  lan_graphdef, lan_state = _lan_target_state(config)
  training.check_divisible(config.lan.batch_size, mesh)
  noise = make_noise(config, data, place)

  lan_state = training.fit(
      lan_update(config, f_graphdef, lan_graphdef, allowed, mesh=mesh),
      lan_state, {**train_digits, 'f_params': f_state['params'],
                  'noise': noise},
      rng=lan_key, num_steps=config.lan.num_steps, workdir=workdir,
      name='lan', log_every=config.log_every,
      checkpoint_every=config.checkpoint_every, mesh=mesh)
  io.write_json(os.path.join(workdir, 'lan_explains.json'), {
      'f_checkpoint': os.path.abspath(f_checkpoint_dir(config, workdir,
                                                       domain)),
      'f_step': int(f_state['step']), 'domain': domain})
  return f_state, lan_state


def make_noise(config, data, place):
  if config.lan.noise == 'bootstrap':
    # Bootstrapped noise: translated training images, i.e. training digits
    # drawn uniformly and placed at random positions of the domain.
    return noise_lib.BootstrapNoise(data['train']['digits'], transform=place)
  return noise_lib.make_noise(config.lan.noise, value=config.lan.noise_value)


def train(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Trains F and A for every configured domain."""
  data = digits(config, load_mnist(config))
  mesh = training.make_mesh(config.num_devices or None)
  for domain in config.domains:
    print(f'=== translated MNIST, domain {domain!r} ===', flush=True)
    train_domain(config, os.path.join(workdir, domain), data, domain, mesh)


# ----------------------------------------------------------------------------
# Evaluation.


def small_digit_accuracy(f_apply, f_params, small_digits, labels, canvas):
  """F's accuracy on ``s x s`` digits centred at every possible pixel.

  Returns:
    ``(canvas, canvas)`` accuracies, NaN where no digit can be centred.
  """
  s = small_digits.shape[-1]
  half = s // 2
  centres = jnp.arange(half, canvas - (s - half) + 1)
  grid = jnp.stack(jnp.meshgrid(centres, centres, indexing='ij'), -1)
  grid = grid.reshape(-1, 2)

  def acc_at(centre):
    x = tm.place_centred(small_digits, centre, canvas)
    return (jnp.argmax(f_apply(f_params, x), -1) == labels).mean()

  acc = jax.lax.map(acc_at, grid, batch_size=8)
  out = jnp.full((canvas, canvas), jnp.nan)
  return out.at[grid[:, 0], grid[:, 1]].set(acc)


def evaluate_domain(config, workdir, data, domain) -> dict:
  """Figures and metrics for one trained domain; returns the metrics."""
  from lanjax.experiments import figures  # pylint: disable=g-import-not-at-top
  _, _, eval_key = _rngs(config, domain)
  canvas, size = config.data.canvas, config.data.digit_size
  f_graphdef, f_target = _f_target_state(config)
  lan_graphdef, lan_target = _lan_target_state(config)
  f_state, f_step = training.load_state(
      f_checkpoint_dir(config, workdir, domain), f_target, what='F')
  lan_state, lan_step = training.load_state(
      os.path.join(workdir, 'checkpoints', 'lan'), lan_target, what='the LAN A')
  f_apply = f_apply_fn(f_graphdef)
  f = functools.partial(f_apply, f_state['params'])
  a = lambda x: nnx.merge(lan_graphdef, lan_state['params'])(x)
  place = placement(config, domain)
  test = test_set(config, data, domain, eval_key)
  noise_key, perm_key, corner_key = jax.random.split(
      jax.random.fold_in(eval_key, 1), 3)

  @jax.jit
  def mask_stats(x, y, corner, noise):
    logits = f(x)
    mask = a(x)
    imp = metrics_lib.importance(mask)
    box = metrics_lib.box_region(corner, size, (canvas, canvas))[..., None]
    # Fidelity: F's agreement with F(x) under fresh bootstrapped noise, for
    # the LAN mask and for the same mask with its pixels randomly permuted
    # (same amount of corruption, placed without knowledge of F).
    eta = noise.sample(noise_key, x, 1)[0]
    x_lan = mask * eta + (1 - mask) * x
    flat = mask.reshape(mask.shape[0], -1)
    perm = jax.vmap(jax.random.permutation)(
        jax.random.split(perm_key, flat.shape[0]), flat).reshape(mask.shape)
    x_rand = perm * eta + (1 - perm) * x
    return {
        'correct': (jnp.argmax(logits, -1) == y).astype(jnp.float32),
        'importance': imp,
        'mass_in_box': metrics_lib.mass_in_region(imp, box),
        'box': box,
        'agreement_lan': metrics_lib.agreement(f(x_lan), logits),
        'agreement_random_mask': metrics_lib.agreement(f(x_rand), logits),
        'mask_mean': flat.mean(-1),
    }

  stats = mask_stats(test['x'], test['y'], test['corner'],
                     make_noise(config, data, place))
  mean_imp = stats['importance'].mean(0)  # the constant grid, Fig. 3a
  specific = stats['importance'] - mean_imp
  pointing = metrics_lib.pointing_game(specific, stats['box'])
  pointing_plain = metrics_lib.pointing_game(stats['importance'], stats['box'])

  acc_map = small_digit_accuracy(
      f_apply, f_state['params'],
      data['test']['small'][:config.eval.small_digit_examples],
      data['test']['labels'][:config.eval.small_digit_examples], canvas)
  acc_map = np.asarray(acc_map)
  norm_acc = acc_map / np.nanmax(acc_map)
  valid = ~np.isnan(norm_acc)
  rows, cols = np.nonzero(valid)
  lo, hi = rows.min(), rows.max()
  ring = np.minimum.reduce([rows - lo, hi - rows, cols - lo, hi - cols])
  border = ring < config.eval.border_width
  centre = ring >= (hi - lo) // 2 - config.eval.centre_halfwidth + 1

  m = {
      'domain': domain,
      'f_step': int(f_step), 'lan_step': int(lan_step),
      'num_test_examples': int(test['x'].shape[0]),
      'f_test_accuracy': float(stats['correct'].mean()),
      'importance_mass_in_box': float(stats['mass_in_box'].mean()),
      'box_area_share': size * size / canvas ** 2,
      'pointing_game_specific': float(pointing.mean()),
      'pointing_game_plain': float(pointing_plain.mean()),
      'fidelity_lan_mask': float(stats['agreement_lan'].mean()),
      'fidelity_random_mask_same_mean': float(
          stats['agreement_random_mask'].mean()),
      'mask_mean': float(stats['mask_mean'].mean()),
      'beta': float(config.lan.beta),
      'small_digit_size': int(config.data.small_digit_size),
      'small_digit_norm_accuracy_border': float(norm_acc[rows, cols][border].mean()),
      'small_digit_norm_accuracy_centre': float(norm_acc[rows, cols][centre].mean()),
      'small_digit_accuracy_max': float(np.nanmax(acc_map)),
      'definitions': {
          'importance': '1 - A(x)',
          'importance_mass_in_box': 'mean over test images of the share of '
                                    'importance inside the 12x12 digit box',
          'pointing_game_specific': 'share of test images whose top pixel of '
                                    'importance minus the test-set mean map '
                                    'lies in the box (ties: fraction of tied '
                                    'maxima inside)',
          'fidelity_lan_mask': 'agreement of argmax F(x~) with argmax F(x), '
                               'one fresh bootstrap noise sample per image',
          'fidelity_random_mask_same_mean': 'same, with the mask pixels '
                                            'randomly permuted per image',
          'small_digit_norm_accuracy_border': 'normalised accuracy of 7x7 '
                                              'digits centred on the outer '
                                              f'{config.eval.border_width} '
                                              'rings of possible centres',
          'small_digit_norm_accuracy_centre': 'same for the central '
                                              f'{2 * config.eval.centre_halfwidth}'
                                              'x'
                                              f'{2 * config.eval.centre_halfwidth}'
                                              ' block of centres',
      },
  }

  # The excluded corner: F's accuracy there vs elsewhere, grid importance.
  c0 = canvas - config.data.corner_size
  in_corner = np.zeros((canvas, canvas), bool)
  in_corner[c0:, c0:] = True
  corner_pos = jnp.full((test['x'].shape[0], 2), canvas - size, jnp.int32)
  x_corner = tm.place(data['test']['digits'][:test['x'].shape[0]], corner_pos,
                      canvas)
  corner_acc = float((jnp.argmax(f(x_corner), -1) == test['y']).mean())
  elsewhere_allowed = tm.allowed_positions(canvas, size,
                                           exclude_corner=config.data.corner_size)
  x_else, _ = tm.sample(corner_key, data['test']['digits'][:test['x'].shape[0]],
                        elsewhere_allowed, canvas)
  else_acc = float((jnp.argmax(f(x_else), -1) == test['y']).mean())
  grid = np.asarray(mean_imp[..., 0])
  m.update({
      'accuracy_digits_in_corner': corner_acc,
      'accuracy_digits_elsewhere': else_acc,
      'grid_importance_in_corner': float(grid[in_corner].mean()),
      'grid_importance_elsewhere': float(grid[~in_corner].mean()),
  })

  # Learning curve of F (test accuracy) from the run's JSON-lines log.
  curve = training.read_metric(os.path.join(workdir, 'metrics_f.jsonl'),
                               'test_accuracy')
  m['f_learning_curve'] = curve

  n_fig = config.eval.num_figure_examples
  figures.attention_pairs(
      np.asarray(test['x'][:n_fig]), np.asarray(stats['importance'][:n_fig]),
      np.asarray(test['corner'][:n_fig]), size,
      os.path.join(workdir, 'fig2_attention_maps.png'),
      title=f'Translated MNIST ({domain}): digits and attention (1 - A(x))',
      cols=min(n_fig, 4))
  figures.heatmap(
      grid, os.path.join(workdir, 'fig3_grid.png'),
      title=f'Mean attention over the test set ({domain})',
      box=(c0, c0, config.data.corner_size) if domain == 'corner' else None)
  figures.heatmap(
      norm_acc, os.path.join(workdir, 'fig3_small_digit_accuracy.png'),
      title=f'Normalised accuracy of {config.data.small_digit_size}x'
            f'{config.data.small_digit_size} digits by centre ({domain})',
      box=(c0, c0, config.data.corner_size) if domain == 'corner' else None,
      vmin=0.0, vmax=1.0)
  if curve:
    figures.curve(np.asarray(curve), os.path.join(workdir, 'f_learning_curve.png'),
                  title=f'F test accuracy ({domain})', xlabel='step',
                  ylabel='test accuracy')
  io.write_json(os.path.join(workdir, 'metrics.json'), m)
  return m, {'grid': grid, 'small_digit_accuracy': norm_acc}


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Evaluates every configured domain; writes ``workdir/metrics.json``."""
  data = digits(config, load_mnist(config))
  from lanjax.experiments import figures  # pylint: disable=g-import-not-at-top
  results, maps = {}, {}
  for domain in config.domains:
    results[domain], maps[domain] = evaluate_domain(
        config, os.path.join(workdir, domain), data, domain)
  # Fig. 3a-d in one row, as the paper lays it out.
  c0 = config.data.canvas - config.data.corner_size
  box = lambda d: (c0, c0, config.data.corner_size) if d == 'corner' else None
  s = config.data.small_digit_size
  figures.panels(
      [maps[d][k] for d in maps for k in ('grid', 'small_digit_accuracy')],
      os.path.join(workdir, 'fig3_grid_and_accuracy.png'),
      titles=[t for d in maps for t in (
          f'mean attention ({d})', f'norm. accuracy, {s}x{s} digits ({d})')],
      boxes=[box(d) for d in maps for _ in range(2)],
      vmins=[None, 0.0] * len(maps), vmaxs=[None, 1.0] * len(maps))
  summary = {'experiment': 'translated_mnist', 'domains': results}
  if 'standard' in results and 'corner' in results:
    s, c = results['standard'], results['corner']
    summary['claims'] = {
        'blob_around_digit': s['importance_mass_in_box'] > s['box_area_share'],
        'input_specific_attention_points_at_digit':
            s['pointing_game_specific'] > s['box_area_share'],
        'accuracy_falls_at_border':
            s['small_digit_norm_accuracy_border']
            < s['small_digit_norm_accuracy_centre'],
        'corner_accuracy_drops_when_excluded':
            c['accuracy_digits_in_corner'] < c['accuracy_digits_elsewhere'],
        'corner_grid_importance_drops_when_excluded':
            c['grid_importance_in_corner'] < c['grid_importance_elsewhere'],
    }
  io.write_json(os.path.join(workdir, 'metrics.json'), summary)
  for domain, m in results.items():
    print(f'[{domain}] F test accuracy {m["f_test_accuracy"]:.4f}; importance '
          f'in box {m["importance_mass_in_box"]:.3f} (box area '
          f'{m["box_area_share"]:.3f}); pointing game '
          f'{m["pointing_game_specific"]:.3f}; fidelity LAN '
          f'{m["fidelity_lan_mask"]:.3f} vs random '
          f'{m["fidelity_random_mask_same_mean"]:.3f} at mean mask '
          f'{m["mask_mean"]:.3f}; corner accuracy '
          f'{m["accuracy_digits_in_corner"]:.3f} vs elsewhere '
          f'{m["accuracy_digits_elsewhere"]:.3f}', flush=True)
  if 'claims' in summary:
    print('claims:', summary['claims'], flush=True)
  return summary
