"""Translated MNIST (Grimm et al., section 5.1, Fig. 2 and 3a-d, appendix A).

Two tasks, one per domain (``standard``: 12x12 digits anywhere on a 28x28
canvas; ``corner``: never in the bottom-right 12x12 region): the classifier F,
then the LAN A on F with bootstrapped noise (translated training digits).
Evaluation writes figures and ``metrics.json`` in ``workdir/<domain>/`` and
the claims in ``workdir/metrics.json``. Runs on `lanjax.experiments.skeleton`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lanjax import corruption
from lanjax import metrics as metrics_lib
from lanjax import noise as noise_lib
from lanjax import training
from lanjax import validation
from lanjax.data import tfds_data
from lanjax.data import translated_mnist as tm
from lanjax.experiments import skeleton
from lanjax.models import ConvClassifier

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


def load_data(config) -> dict[str, Any]:
  """The experiment's data, loaded once: `digits` of MNIST."""
  return digits(config, load_mnist(config))


def synthetic_data(config, num_train: int = 60_000, num_test: int = 1_000):
  """Random digits of MNIST's size and layout (`load_data`'s), for benchmarks."""
  key = jax.random.key(0)
  s, t = config.data.digit_size, config.data.small_digit_size
  split = lambda n: {'digits': jax.random.uniform(key, (n, s, s)),
                     'small': jax.random.uniform(key, (n, t, t)),
                     'labels': jax.random.randint(key, (n,), 0, 10)}
  return {'train': split(num_train), 'test': split(num_test)}


def test_set(config, data, domain, key):
  """A fixed translated test set: ``{'x', 'y', 'corner'}`` (same every call)."""
  n = min(config.eval.num_examples, data['test']['digits'].shape[0])
  x, corner = tm.sample(key, data['test']['digits'][:n],
                        placement(config, domain).allowed, config.data.canvas)
  return {'x': x, 'y': data['test']['labels'][:n], 'corner': corner}


# ----------------------------------------------------------------------------
# Networks and tasks.


def make_f(config) -> ConvClassifier:
  c = config.data.canvas
  return ConvClassifier((c, c, 1), features=tuple(config.f.features),
                        kernel_size=config.f.kernel_size,
                        stride=config.f.stride, num_classes=10,
                        rngs=nnx.Rngs(config.seed))


def make_lan(config) -> nnx.Module:
  c = config.data.canvas
  return skeleton.make_lan(config.lan, (c, c, 1), seed=config.seed + 1)


def task_keys(config, domain):
  """``(f_key, lan_key, eval_key)`` of a domain."""
  root = jax.random.key(config.seed)
  return tuple(jax.random.split(
      jax.random.fold_in(root, DOMAINS.index(domain)), 3))


def make_noise(config, data, place):
  if config.lan.noise == 'bootstrap':
    # Bootstrapped noise: translated training images, i.e. training digits
    # drawn uniformly and placed at random positions of the domain.
    return noise_lib.BootstrapNoise(data['train']['digits'], transform=place)
  return noise_lib.make_noise(config.lan.noise, value=config.lan.noise_value)


def make_task(config, data, domain: str) -> skeleton.Task:
  """F and A of one domain, and what training them reads."""
  place = placement(config, domain)
  allowed, canvas = place.allowed, config.data.canvas
  keys = task_keys(config, domain)
  test = test_set(config, data, domain, keys[2])

  def f_batch(d, key):
    b = tm.sample_batch(key, d['digits'], d['labels'], config.f.batch_size,
                        allowed, canvas)
    return {'x': b['x'], 'y': b['y']}

  def lan_batch(d, key):
    return tm.sample_batch(key, d['digits'], d['labels'],
                           config.lan.batch_size, allowed, canvas)['x']

  def f_eval(f):
    return {'accuracy': (jnp.argmax(f(test['x']), -1) == test['y']).mean()}

  return skeleton.Task(
      name=domain, make_f=lambda: make_f(config),
      make_lan=lambda: make_lan(config),
      train_data={'digits': data['train']['digits'],
                  'labels': data['train']['labels']},
      f_batch=f_batch, lan_batch=lan_batch,
      noise=make_noise(config, data, place), keys=keys, f_eval=f_eval)


def tasks(config, data) -> list[skeleton.Task]:
  return [make_task(config, data, domain) for domain in config.domains]


# ----------------------------------------------------------------------------
# Evaluation.


def small_digit_accuracy(f_apply, f_params, small_digits, labels, canvas):
  """F's accuracy on ``s x s`` digits centred at every possible pixel.

  Returns:
    ``(canvas, canvas)`` accuracies, NaN where no digit can be centred.
  """
  return _small_digit_accuracy(f_apply, int(canvas), f_params, small_digits,
                               labels)


# Jitted with the data as arguments: run eagerly, `lax.map` made the digits a
# constant of its loop, which XLA constant-folded through F's first layer at
# compile time (~15 s per domain).
@functools.partial(jax.jit, static_argnums=(0, 1))
def _small_digit_accuracy(f_apply, canvas, f_params, small_digits, labels):
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


def mask_agreements(f, x, mask, eta, *, key):
  """Does F keep its prediction under the LAN mask, and under the control?

  Agreement of argmax F(x~) with argmax F(x), x~ corrupted by eq. (2) with
  the noise sample ``eta``, for the LAN mask and for the same mask with its
  pixels randomly permuted per image (`metrics.permuted`: the same amount of
  corruption, placed without knowledge of F). The claim
  ``lan_mask_keeps_prediction_better_than_random_mask`` compares the two.

  Args:
    f: the black box, ``x -> logits (B, C)``.
    x: ``(B, H, W, 1)``.
    mask: A(x), ``(B, H, W, 1)``.
    eta: one noise sample of ``x``'s shape.
    key: PRNG key of the permutations.

  Returns:
    ``(agreement_lan, agreement_random_mask)``, each ``(B,)`` in {0, 1}.
  """
  logits = f(x)
  control = metrics_lib.permuted(key, mask)
  return (metrics_lib.agreement(f(corruption.corrupt(x, mask, eta)), logits),
          metrics_lib.agreement(f(corruption.corrupt(x, control, eta)),
                                logits))


def evaluate_task(config, data, task, trained, workdir) -> dict:
  """Figures and metrics of one trained domain; returns the metrics."""
  from lanjax.experiments import figures  # pylint: disable=g-import-not-at-top
  domain, eval_key = task.name, task.keys[2]
  canvas, size = config.data.canvas, config.data.digit_size
  f, a = trained.f, trained.a
  test = test_set(config, data, domain, eval_key)
  noise_key, perm_key, corner_key = jax.random.split(
      jax.random.fold_in(eval_key, 1), 3)
  c0 = canvas - config.data.corner_size

  @jax.jit
  def mask_stats(x, y, corner, noise):
    logits = f(x)
    mask = a(x)
    imp = metrics_lib.importance(mask)
    box = metrics_lib.box_region(corner, size, (canvas, canvas))[..., None]
    eta = noise.sample(noise_key, x, 1)[0]
    agree_lan, agree_random = mask_agreements(f, x, mask, eta, key=perm_key)
    flat = mask.reshape(mask.shape[0], -1)
    inside = np.zeros((canvas, canvas, 1), bool)
    inside[c0:, c0:] = True
    inside = inside.reshape(-1)
    per_pixel = imp.reshape(imp.shape[0], -1)
    return {
        'correct': (jnp.argmax(logits, -1) == y).astype(jnp.float32),
        'importance': imp,
        'mass_in_box': metrics_lib.mass_in_region(imp, box),
        'box': box,
        'importance_corner_minus_elsewhere': (
            per_pixel[:, inside].mean(-1) - per_pixel[:, ~inside].mean(-1)),
        'agreement_lan': agree_lan,
        'agreement_random_mask': agree_random,
        'mask_mean': flat.mean(-1),
    }

  stats = mask_stats(test['x'], test['y'], test['corner'], task.noise)
  mean_imp = stats['importance'].mean(0)  # the constant grid, Fig. 3a
  specific = stats['importance'] - mean_imp
  pointing = metrics_lib.pointing_game(specific, stats['box'])
  pointing_plain = metrics_lib.pointing_game(stats['importance'], stats['box'])

  acc_map = small_digit_accuracy(
      trained.f_apply, trained.f_params,
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
      'num_test_examples': int(test['x'].shape[0]),
      'f_test_accuracy': float(stats['correct'].mean()),
      'importance_mass_in_box': float(stats['mass_in_box'].mean()),
      'box_area_share': size * size / canvas ** 2,
      'pointing_game_specific': float(pointing.mean()),
      'pointing_game_plain': float(pointing_plain.mean()),
      'agreement_lan_mask': float(stats['agreement_lan'].mean()),
      'agreement_random_mask_same_mean': float(
          stats['agreement_random_mask'].mean()),
      'mask_mean': float(stats['mask_mean'].mean()),
      'mask_relative_spread': float(metrics_lib.mask_spread(
          1.0 - stats['importance'])['relative_spread']),
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
          'mask_relative_spread': 'mean over pixels of the std of A(x) '
                                  'across test images over the mean of A(x) '
                                  '(`metrics.mask_spread`; Pong reports the '
                                  'same)',
          'agreement_lan_mask': 'agreement of argmax F(x~) with argmax '
                                'F(x), x~ corrupted by eq. (2) with the LAN '
                                'mask and one fresh noise sample per image',
          'agreement_random_mask_same_mean': 'same, with the mask pixels '
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
  in_corner = np.zeros((canvas, canvas), bool)
  in_corner[c0:, c0:] = True
  corner_pos = jnp.full((test['x'].shape[0], 2), canvas - size, jnp.int32)
  x_corner = tm.place(data['test']['digits'][:test['x'].shape[0]], corner_pos,
                      canvas)
  correct_corner = np.asarray(jnp.argmax(f(x_corner), -1) == test['y'])
  corner_acc = float(correct_corner.mean())
  elsewhere_allowed = tm.allowed_positions(canvas, size,
                                           exclude_corner=config.data.corner_size)
  x_else, _ = tm.sample(corner_key, data['test']['digits'][:test['x'].shape[0]],
                        elsewhere_allowed, canvas)
  correct_else = np.asarray(jnp.argmax(f(x_else), -1) == test['y'])
  else_acc = float(correct_else.mean())
  grid = np.asarray(mean_imp[..., 0])
  m.update({
      'accuracy_digits_in_corner': corner_acc,
      'accuracy_digits_elsewhere': else_acc,
      'grid_importance_in_corner': float(grid[in_corner].mean()),
      'grid_importance_elsewhere': float(grid[~in_corner].mean()),
  })

  # Claims, each with its effect size and a 95% interval over test images
  # (over centre positions for the small digits): they fail on an untrained
  # or degenerate run (tests/test_translated_mnist.py).
  claim = skeleton.claim
  m['claims'] = {
      'f_is_accurate': claim(
          stats['correct'], above=0.9,
          statement='F classifies more than 90% of test digits correctly'),
      'lan_mask_keeps_prediction_better_than_random_mask': claim(
          stats['agreement_lan'] - stats['agreement_random_mask'], above=0.2,
          statement='corrupting with the LAN mask keeps F\'s prediction on '
                    'at least 20 points more images than the same mask with '
                    'its pixels permuted'),
      'blob_around_digit': claim(
          stats['mass_in_box'], above=1.5 * m['box_area_share'],
          statement='the share of importance inside the digit\'s box is '
                    'over 1.5x the box\'s area share'),
      'input_specific_attention_points_at_digit': claim(
          pointing, above=0.8,
          statement='the top pixel of importance minus the mean map lies in '
                    'the digit\'s box on most images'),
      'accuracy_falls_at_border': claim(
          norm_acc[rows, cols][centre], baseline=norm_acc[rows, cols][border],
          above=0.05, statement='normalised accuracy of small digits is over '
                                '5 points higher at the centre than at the '
                                'border'),
  }
  if domain == 'corner':
    m['claims'].update({
        'corner_accuracy_drops_when_excluded': claim(
            correct_else.astype(float) - correct_corner, above=0.5,
            statement='F, never shown the corner, is over 50 points less '
                      'accurate on the same digits placed there'),
        'corner_grid_importance_drops_when_excluded': claim(
            -stats['importance_corner_minus_elsewhere'], above=0.05,
            statement='importance in the excluded corner is over 0.05 below '
                      'its mean elsewhere'),
    })

  if config.eval.compare_examples and domain in config.eval.get(
      'compare_domains', DOMAINS):
    m['comparison'] = skeleton.compare_methods(
        config, task, trained, test['x'], workdir=workdir,
        region=stats['box'][..., 0])

  curve = training.read_metric(
      os.path.join(workdir, 'metrics_f.jsonl'), 'test_accuracy')

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
  np.savez(os.path.join(workdir, 'maps.npz'), grid=grid,
           small_digit_accuracy=norm_acc)
  return m




def summarize(config, results, workdir) -> dict:
  """Fig. 3a-d in one row, as the paper lays it out, and the claims."""
  from lanjax.experiments import figures  # pylint: disable=g-import-not-at-top
  maps = {d: np.load(os.path.join(workdir, d, 'maps.npz')) for d in results}
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
  for domain, m in results.items():
    print(f'[{domain}] F test accuracy {m["f_test_accuracy"]:.4f}; importance '
          f'in box {m["importance_mass_in_box"]:.3f} (box area '
          f'{m["box_area_share"]:.3f}); pointing game '
          f'{m["pointing_game_specific"]:.3f}; agreement LAN '
          f'{m["agreement_lan_mask"]:.3f} vs random '
          f'{m["agreement_random_mask_same_mean"]:.3f} at mean mask '
          f'{m["mask_mean"]:.3f}; corner accuracy '
          f'{m["accuracy_digits_in_corner"]:.3f} vs elsewhere '
          f'{m["accuracy_digits_elsewhere"]:.3f}', flush=True)
  return skeleton.report_claims(results)


EXPERIMENT = skeleton.Experiment(
    name='translated_mnist', load_data=load_data, tasks=tasks,
    evaluate=evaluate_task, summarize=summarize,
    synthetic_data=synthetic_data)
