"""CIFAR-10 (Grimm et al., section 5.2, Fig. 4, appendix B).

One task: the black box F of appendix B (`lanjax.models.cifar.CifarConvNet`,
dropout in training, inference mode when explained) trained with small random
affine augmentation inside the jitted step, and the LAN A (FC(500) x3,
FC(1024, sigmoid), a 32x32x1 mask over the 3 channels) on F at
``config.lan.beta`` with bootstrapped noise (training images). Appendix B
states beta both as 5.0 and 7.0: `evaluate_task` also fits an A at each beta
of ``config.lan.compare_betas`` on the *same* F (checkpoints in
``workdir/beta_<b>/``, resumable) and reports both.

Why one task and A fitted again in the evaluation, not one task per beta: the
skeleton reads beta from the config (`skeleton.lan_options`) and trains or
loads F per task (``config.f.init_from`` is for every task), so a second task
would train F a second time. The extra A reuses `training.fit` exactly as the
skeleton fits A (same init, same batches and noise keys: only beta differs).

Evaluation (``workdir/metrics.json``; every number carries ``data_note``: the
offline copy is JPEG):

* F's test accuracy (and on the 1,000 bit-exact originals vs their JPEG
  versions, where ``config.data.lossless_subset`` exists);
* Fig. 4 (`figures.class_columns`): input / importance ``1 - A(x)`` pairs,
  one column per class (horse, plane, truck, bird, ship, deer);
* do masks of one class share features: `metrics.class_similarity` of the
  importance maps against permuted labels (`metrics.permuted_class_gaps`),
  random masks, a freshly initialised A and the raw images;
* how input-specific the masks are: `metrics.input_specificity`, and F's
  confidence when an image is corrupted with its own mask vs the mask of
  another image of its class;
* the attribution comparison (`skeleton.compare_methods`);
* claims (`skeleton.claim`) that fail on an untrained or degenerate run.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lanjax import corruption
from lanjax import io
from lanjax import metrics as metrics_lib
from lanjax import noise as noise_lib
from lanjax import training
from lanjax.data import cifar10 as c10
from lanjax.experiments import skeleton
from lanjax.models import cifar

NUM_CLASSES = len(c10.CLASS_NAMES)


# ----------------------------------------------------------------------------
# Data.


def load_data(config) -> dict[str, Any]:
  """``{'train', 'test': {'image' uint8, 'label', 'index'}, 'data_note'}``."""
  d = config.data
  out, notes = {}, []
  for split, limit in (('train', d.train_limit or None),
                       ('test', d.test_limit or None)):
    s = c10.load_split(split, data_dir=d.data_dir or None,
                       offline_data_dir=d.get('offline_data_dir', '') or None,
                       download=d.download, limit=limit)
    notes.append(s.pop('data_note'))
    out[split] = s
  out['data_note'] = ' / '.join(dict.fromkeys(notes))
  return out


def synthetic_data(config, num_train: int = 50_000, num_test: int = 10_000):
  """Random uint8 images of CIFAR-10's layout (`load_data`'s), for benchmarks."""
  rs = np.random.RandomState(config.seed)
  split = lambda n: {
      'image': rs.randint(0, 256, (n, *c10.IMAGE_SHAPE)).astype(np.uint8),
      'label': rs.randint(0, NUM_CLASSES, n).astype(np.int32),
      'index': np.arange(n, dtype=np.int32)}
  return {'train': split(num_train), 'test': split(num_test),
          'data_note': 'synthetic random images (benchmarks only)'}


def describe(config, data) -> str:
  del config
  return (f'CIFAR-10: {len(data["train"]["label"])} training and '
          f'{len(data["test"]["label"])} test images. {data["data_note"]}')


# ----------------------------------------------------------------------------
# Networks and the task.


def augment_range(config):
  """The training augmentation (`c10.AffineRange`), or None when disabled."""
  a = config.data.augment
  if not a.enabled:
    return None
  return c10.AffineRange(float(a.max_rotation_deg), float(a.max_scale_change),
                         float(a.max_shift))


def make_f(config) -> cifar.CifarConvNet:
  f = config.f
  return cifar.CifarConvNet(
      c10.IMAGE_SHAPE, convs=tuple(map(tuple, f.convs)), dense=tuple(f.dense),
      conv_dropout_rate=f.conv_dropout_rate,
      dense_dropout_rate=f.dense_dropout_rate, lrn=f.lrn,
      rngs=nnx.Rngs(config.seed))


def make_lan(config) -> nnx.Module:
  shape = tuple(config.lan.mask_shape)
  if len(shape) != 3 or shape[:2] != c10.IMAGE_SHAPE[:2] or shape[2] not in (
      1, 3):
    raise ValueError(
        f'config.lan.mask_shape is {shape}; use (32, 32, 1) (one mask tiled '
        'over the colour channels, the paper) or (32, 32, 3).')
  return skeleton.make_lan(config.lan, c10.IMAGE_SHAPE, mask_shape=shape,
                           seed=config.seed + 1)


def make_noise(config, data):
  if config.lan.noise == 'bootstrap':
    return c10.bootstrap_noise(data['train']['image'])
  return noise_lib.make_noise(config.lan.noise, value=config.lan.noise_value)


def f_forward(model, x, key):
  """F in training mode: dropout on."""
  return model(x, dropout_key=key)


def make_task(config, data) -> skeleton.Task:
  """F and A, and what training them reads."""
  keys = tuple(jax.random.split(jax.random.key(config.seed), 3))
  n_eval = min(config.f.eval_examples, len(data['test']['label']))
  # Scaled here, not in the jitted step: XLA would constant-fold the
  # scaling of the whole test set at every compile.
  test_x = c10.to_unit(data['test']['image'][:n_eval])
  test_y = jnp.asarray(data['test']['label'][:n_eval])

  def f_eval(f):
    return {'accuracy': (jnp.argmax(f(test_x), -1) == test_y).mean()}

  return skeleton.Task(
      name='', make_f=lambda: make_f(config),
      make_lan=lambda: make_lan(config),
      train_data={'image': jnp.asarray(data['train']['image']),
                  'label': jnp.asarray(data['train']['label'])},
      f_batch=c10.batch_fn(config.f.batch_size, augment=augment_range(config)),
      lan_batch=c10.lan_batch_fn(config.lan.batch_size),
      noise=make_noise(config, data), keys=keys, f_forward=f_forward,
      f_eval=f_eval)


def tasks(config, data) -> list[skeleton.Task]:
  return [make_task(config, data)]


def beta_dir(workdir: str, beta: float) -> str:
  return os.path.join(workdir, f'beta_{float(beta):g}')


def fit_lan_at_beta(config, task, trained, beta: float, workdir: str):
  """A fitted on the trained F at another ``beta`` (resumable checkpoints in
  `beta_dir`); same init, batches and noise as the main A.

  Returns:
    ``(a, c)``: ``x -> A(x)`` and the config with ``lan.beta = beta``.
  """
  c = config.copy_and_resolve_references()
  c.lan.beta = float(beta)
  where = beta_dir(workdir, beta)
  lan_graphdef, state = skeleton.initial_state(task.make_lan, c.lan)
  update = training.lan_update(
      lan_graphdef, skeleton.optimizer(c.lan), trained.f_apply,
      task.lan_batch, output_loss=task.output_loss,
      **skeleton.lan_options(c.lan))
  state = training.fit(
      update, state, skeleton.lan_data(task, trained.f_params),
      rng=task.keys[1], num_steps=c.lan.num_steps, workdir=where, name='lan',
      log_every=c.log_every, checkpoint_every=c.checkpoint_every,
      steps_per_dispatch=c.get('steps_per_dispatch', 1))
  io.write_json(os.path.join(where, 'lan_explains.json'), {
      'f_step': trained.f_step, 'beta': float(beta),
      'note': 'the same F as the main run (workdir/checkpoints/f)'})
  return (lambda x, p=state['params']: skeleton.apply_fn(lan_graphdef)(p, x),
          c)


# ----------------------------------------------------------------------------
# Mask metrics.


def _batched(fn, x, size: int = 500):
  fn = jax.jit(fn)
  return jnp.concatenate([fn(x[i:i + size]) for i in range(0, len(x), size)])


MASK_TOLERANCE = 1e-3  # RMS per pixel below which two masks are the same


def residuals(masks, *, tol: float = MASK_TOLERANCE):
  """Masks minus the mean mask, ``(N, d)``; zero where a mask's RMS
  deviation from the mean is below ``tol``.

  Without the tolerance a cosine between residuals of float-rounding size
  (a collapsed A whose masks are one saturated pattern) measures only the
  direction of that rounding, which still depends on the input and hence on
  its class.
  """
  z = jnp.asarray(masks, jnp.float32).reshape(len(masks), -1)
  z = z - z.mean(0, keepdims=True)
  rms = jnp.sqrt(jnp.square(z).mean(-1, keepdims=True))
  return jnp.where(rms >= tol, z, 0.0)


def class_gap_per_example(masks, labels, *, num_classes: int = NUM_CLASSES,
                          tol: float = MASK_TOLERANCE):
  """Each mask's mean cosine to the other masks of its class minus its mean
  cosine to masks of other classes (centred residuals, `residuals`; a mask
  within ``tol`` of the mean mask has similarity 0 with every mask).

  Returns:
    ``(N,)``; their mean weighs examples equally (the pair-weighted version
    is `metrics.class_similarity`'s ``gap``).
  """
  z = residuals(masks, tol=tol)
  norm = jnp.linalg.norm(z, axis=-1, keepdims=True)
  z = z / jnp.where(norm > 0, norm, 1.0)
  labels = jnp.asarray(labels, jnp.int32)
  sums = jax.ops.segment_sum(z, labels, num_segments=num_classes)
  counts = jnp.bincount(labels, length=num_classes)[labels]
  own = (z * sums[labels]).sum(-1)
  within = (own - (z * z).sum(-1)) / jnp.maximum(counts - 1, 1)
  between = (z @ sums.sum(0) - own) / jnp.maximum(len(z) - counts, 1)
  return within - between


def same_class_partners(labels, seed: int = 0) -> np.ndarray:
  """For each example another example of its class (a random cycle per
  class); itself where it is alone in its class."""
  labels = np.asarray(labels)
  rs = np.random.RandomState(seed)
  partner = np.arange(len(labels))
  for c in np.unique(labels):
    idx = rs.permutation(np.flatnonzero(labels == c))
    partner[idx] = np.roll(idx, 1)
  return partner


def own_vs_swapped_mask(f, x, masks, partner, noise, key, *,
                        num_samples: int = 4, size: int = 250):
  """F's probability of its prediction on ``x`` corrupted (eq. 2) with the
  image's own mask minus with its partner's mask, mean over noise draws.

  Returns:
    ``(N,)`` differences: > 0 where the own mask keeps what F needs better.
  """
  @jax.jit
  def diff(x, own, other, k):
    pred = jnp.argmax(f(x), -1)
    eta = noise.sample(k, x, num_samples)

    def prob(mask):
      out = jax.vmap(lambda e: jax.nn.softmax(f(corruption.corrupt(
          x, mask, e))))(eta)
      return jnp.take_along_axis(out, pred[None, :, None], -1)[..., 0].mean(0)

    return prob(own) - prob(other)

  return jnp.concatenate([
      diff(x[i:i + size], masks[i:i + size], masks[partner[i:i + size]],
           jax.random.fold_in(key, i)) for i in range(0, len(x), size)])


def mask_metrics(config, task, f, a, x, y, key, *, untrained_a=None) -> dict:
  """Class sharing and input specificity of one A's masks on ``x``.

  Returns:
    ``(numbers, arrays)``: JSON-able numbers and the per-example arrays the
    claims use (``'gap'``, ``'gap_permuted'``, ``'own_minus_swapped'``) and
    the importance maps (``'importance'``).
  """
  masks = _batched(a, x)
  imp = metrics_lib.importance(masks)
  z = residuals(imp)  # centred, masks within tolerance of the mean -> 0
  sim = metrics_lib.class_similarity(z, y, num_classes=NUM_CLASSES,
                                     centre=False)
  k_perm, k_null, k_rand, k_swap = jax.random.split(key, 4)
  null = metrics_lib.permuted_class_gaps(
      k_null, z, y, num_classes=NUM_CLASSES, centre=False,
      num_permutations=config.eval.num_permutations)
  gap = class_gap_per_example(imp, y)
  gap_perm = class_gap_per_example(imp, jax.random.permutation(k_perm, y))
  random_gap = metrics_lib.class_similarity(
      jax.random.uniform(k_rand, imp.shape), y,
      num_classes=NUM_CLASSES)['gap']
  image_gap = metrics_lib.class_similarity(
      x.mean(-1), y, num_classes=NUM_CLASSES)['gap']
  spec = metrics_lib.input_specificity(masks)
  partner = same_class_partners(np.asarray(y), seed=config.seed)
  swapped = own_vs_swapped_mask(f, x, masks, partner, task.noise, k_swap)
  per_class = np.asarray(sim['within_per_class'])
  numbers = {
      'mask_mean': float(masks.mean()),
      'share_of_masks_off_the_mean_mask': float(
          (jnp.abs(z).sum(-1) > 0).mean()),
      'class_similarity': {
          'within': float(sim['within']), 'between': float(sim['between']),
          'gap': float(sim['gap']),
          'within_per_class': {n: float(v) for n, v in zip(c10.CLASS_NAMES,
                                                           per_class)},
          'permuted_labels_gap_mean': float(null.mean()),
          'permuted_labels_gap_std': float(null.std()),
          'permuted_labels_share_at_least_gap': float(
              (null >= sim['gap']).mean()),
          'random_masks_gap': float(random_gap),
          'raw_images_gap': float(image_gap),
      },
      'input_specificity': {k: float(v) for k, v in spec.items()},
      'own_minus_swapped_mask_probability': float(swapped.mean()),
  }
  if untrained_a is not None:
    fresh = metrics_lib.importance(_batched(untrained_a, x))
    numbers['class_similarity']['untrained_a_gap'] = float(
        metrics_lib.class_similarity(residuals(fresh), y, centre=False,
                                     num_classes=NUM_CLASSES)['gap'])
    numbers['untrained_a_input_specificity'] = {
        k: float(v) for k, v in metrics_lib.input_specificity(
            1 - fresh).items()}
  return numbers, {'gap': gap, 'gap_permuted': gap_perm,
                   'own_minus_swapped': swapped, 'importance': imp,
                   'masks': masks}


def deletion_gain_over_random(f, x, importance, key, removal, num_steps):
  """Per example: deletion AUC of a random map minus that of ``importance``
  (> 0: removing the important pixels first hurts F sooner)."""
  k_map, k_curve = jax.random.split(key)
  random_map = jax.random.uniform(k_map, importance.shape)
  auc = lambda m: metrics_lib.perturbation_curve(
      f, x, m, key=k_curve, removal=removal, mode='deletion',
      num_steps=num_steps)[1]
  return jax.jit(lambda: auc(random_map) - auc(importance))()


# ----------------------------------------------------------------------------
# Evaluation.


def fig4(config, x, importance, masks, y, pred, path, *, beta):
  """Fig. 4: rows of input / importance pairs, one column per class."""
  from lanjax.experiments import figures  # pylint: disable=g-import-not-at-top
  classes = tuple(config.eval.figure_classes)
  idx = c10.select_by_class(
      y, classes, rows=config.eval.figure_rows,
      predictions=pred if config.eval.figure_correct_only else None)
  labels = [[f'F: {c10.CLASS_NAMES[pred[i]]}, mean A {masks[i].mean():.2f}'
             for i in row] for row in idx]
  figures.class_columns(
      np.asarray(x)[idx], np.asarray(importance)[idx],
      ['plane' if c == 'airplane' else c for c in classes], path,
      title=f'CIFAR-10, beta = {beta:g}: input and importance 1 - A(x)',
      row_labels=labels)
  return idx


def evaluate_task(config, data, task, trained, workdir) -> dict:
  """F's accuracy, the masks' metrics at every beta, Fig. 4, the comparison
  and the claims; returns the metrics."""
  from lanjax.experiments import figures  # pylint: disable=g-import-not-at-top
  n = min(config.eval.num_examples, len(data['test']['label']))
  x = c10.to_unit(data['test']['image'][:n])
  y = np.asarray(data['test']['label'][:n])
  eval_key = task.keys[2]
  logits = _batched(trained.f, x)
  pred = np.asarray(jnp.argmax(logits, -1))
  correct = (pred == y).astype(np.float64)
  acc, low, high = metrics_lib.bootstrap_ci(correct,
                                            num=config.eval.num_bootstrap)
  m = {
      'data_note': data['data_note'],
      'num_test_examples': int(n),
      'f_test_accuracy': float(correct.mean()),
      'f_test_accuracy_ci95': [low, high],
      'f_test_accuracy_per_class': {
          name: float(correct[y == c].mean()) if (y == c).any() else None
          for c, name in enumerate(c10.CLASS_NAMES)},
      'beta': float(config.lan.beta),
  }
  del acc
  lossless = config.data.get('lossless_subset', '')
  test_index = np.asarray(data['test']['index'])
  if (lossless and os.path.isfile(lossless) and len(test_index) >= 1000
      and np.array_equal(test_index[:1000], np.arange(1000))):
    sub = c10.load_lossless_subset(lossless)
    m['jpeg_vs_original'] = c10.jpeg_effect(
        lambda v: _batched(trained.f, v), data['test']['image'][:1000],
        sub['test_image'], sub['test_label'])

  untrained = nnx.split(task.make_lan(), nnx.Param)
  untrained_a = lambda v: skeleton.apply_fn(untrained[0])(untrained[1], v)
  lans = {float(config.lan.beta): (trained.a, config)}
  for beta in config.lan.compare_betas:
    if float(beta) not in lans:
      lans[float(beta)] = fit_lan_at_beta(config, task, trained, beta,
                                          workdir)
  m['betas'], arrays = {}, {}
  for beta, (a, _) in lans.items():
    numbers, arrays[beta] = mask_metrics(
        config, task, trained.f, a, x, y, jax.random.fold_in(eval_key, 1),
        untrained_a=untrained_a)
    m['betas'][f'{beta:g}'] = numbers
    name = 'fig4.png' if beta == config.lan.beta else f'fig4_beta{beta:g}.png'
    fig4(config, x, arrays[beta]['importance'], arrays[beta]['masks'], y,
         pred, os.path.join(workdir, name), beta=beta)
    figures.heatmap(
        np.asarray(arrays[beta]['importance'].mean(0)[..., 0]),
        os.path.join(workdir, name.replace('fig4', 'mean_importance')),
        title=f'Mean importance 1 - A(x) over {n} test images '
              f'(beta = {beta:g})', vmin=0.0, vmax=1.0)
  main = arrays[float(config.lan.beta)]

  nc = min(config.eval.compare_examples, n) or min(100, n)
  gain = deletion_gain_over_random(
      trained.f, x[:nc], main['importance'][:nc],
      jax.random.fold_in(eval_key, 2), metrics_lib.removal_by_blur(),
      config.eval.curve_steps)
  if config.eval.compare_examples:
    m['comparison'] = skeleton.compare_methods(
        config, task, trained, x, workdir=workdir,
        mask_shape=tuple(config.lan.mask_shape))
    for beta, (a, c) in lans.items():
      if beta == config.lan.beta:
        continue
      c = c.copy_and_resolve_references()
      c.eval.methods = ('lan', 'random')
      c.eval.sanity_lan_steps = 0
      where = beta_dir(workdir, beta)
      table = skeleton.compare_methods(
          c, task, skeleton.dataclasses.replace(trained, a=a), x,
          workdir=where)
      m['betas'][f'{beta:g}']['comparison'] = table

  claim = skeleton.claim
  nb = config.eval.num_bootstrap
  m['claims'] = {
      'f_is_far_above_chance': claim(
          correct, above=0.4, num_bootstrap=nb,
          statement='F classifies over 40% of the test images correctly '
                    '(chance: 10%)'),
      'masks_of_a_class_share_features': claim(
          main['gap'], baseline=main['gap_permuted'], above=0.01,
          num_bootstrap=nb,
          statement='an importance map is more similar (centred cosine) to '
                    'the maps of its own class than to other classes\', by '
                    '0.01 more than with permuted labels'),
      'masks_are_input_specific': claim(
          main['own_minus_swapped'], above=0.01, num_bootstrap=nb,
          statement='F keeps its prediction with higher probability when an '
                    'image is corrupted (eq. 2) with its own mask than with '
                    'the mask of another image of its class (by > 0.01)'),
      'lan_beats_random_on_deletion_under_blur': claim(
          gain, above=0.01, num_bootstrap=nb,
          statement='deleting pixels by blurring in the order of 1 - A(x) '
                    'lowers F\'s probability of its class sooner than a '
                    'random order (deletion AUC lower by > 0.01)'),
  }
  curve = training.read_metric(os.path.join(workdir, 'metrics_f.jsonl'),
                               'test_accuracy')
  if curve:
    figures.curve(np.asarray(curve),
                  os.path.join(workdir, 'f_learning_curve.png'),
                  title=f'F test accuracy (first {config.f.eval_examples} '
                        'test images)', xlabel='step', ylabel='accuracy')
  return m


def summarize(config, results, workdir) -> dict:
  """Prints the numbers and the claims; the claims' verdicts at the top."""
  del config, workdir
  m = results['']
  print(f'F test accuracy {m["f_test_accuracy"]:.4f} on '
        f'{m["num_test_examples"]} test images ({m["data_note"]})',
        flush=True)
  for beta, b in m['betas'].items():
    s = b['class_similarity']
    print(f'[beta {beta}] mask mean {b["mask_mean"]:.3f}; class gap '
          f'{s["gap"]:.4f} (permuted labels {s["permuted_labels_gap_mean"]:.4f}'
          f' +- {s["permuted_labels_gap_std"]:.4f}, untrained A '
          f'{s.get("untrained_a_gap", float("nan")):.4f}); specific fraction '
          f'{b["input_specificity"]["specific_fraction"]:.3f}; own - swapped '
          f'mask {b["own_minus_swapped_mask_probability"]:.4f}', flush=True)
  return skeleton.report_claims(results)


EXPERIMENT = skeleton.Experiment(
    name='cifar10', load_data=load_data, tasks=tasks, evaluate=evaluate_task,
    summarize=summarize, describe=describe, synthetic_data=synthetic_data)
