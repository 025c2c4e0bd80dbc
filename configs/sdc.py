"""SDC: is the mask right? (Pandey, Vashisht, Ramaswamy; sections 3, 4, 6.1).

A selective-dependence task knows the answer to "what does F attend to": the
label depends on one foreground segment (index i*, kept with every test
instance, never shown to training). Trains the black boxes F, then a LAN A
on each, and scores A, the FCAM's own attention alpha and the baselines
against i*: FT (the foreground segment scores highest), importance mass in
the foreground, segment pointing game, segment deletion AUC, time per
explanation; NNZ / Dist / Ent of alpha (Table 2).

Tasks (``--config configs/sdc.py:VARIANT``):
  (none)     MNIST-SDC, the fast variant of section 6.1: 84x84 mosaics of 3x3
             MNIST digits, foreground digits 0/1/2, background 3-9, 30,000
             train mosaics (from MNIST train) and 10,000 test mosaics (from
             MNIST test). F: the softmax FCAM (CNN f and g per segment) and a
             plain CNN on the mosaic (`lanjax.models.MosaicCNN`).
  cifar      CIFAR-SDC, section 6.1: CIFAR-10 segments (96x96x3 mosaics),
             foreground airplane/automobile/bird, background the other seven.
             The TFDS copy in ../shared is an offline JPEG copy of CIFAR-10:
             say so next to any number measured on it.
  synthetic  d = 2, k = 3, m = 9 Gaussians (`lanjax.data.sdc.SYNTHETIC`); the
             default configuration 'no_linear_focus' is section 4.2's second
             error mode: with a linear focus net (focus_hidden=()) an accurate
             FCAM cannot be interpretable (FT near 2/3 at best). 200 training
             mosaics as in the paper.
  quick      a smoke run on MNIST-SDC (tiny data, a few steps).

Departures from the paper: train and test mosaics come from the dataset's
own train and test images (the paper draws 40,000 and sets 10,000 aside); the
per-segment CNNs are 2 strided convs + 1 FC (the paper: 6 convs + 2 FC each);
F's schedule is shorter (see below). NNZ is reported as a count, as in the
paper's Table 2 (its formula has a 1/m).

Measured schedule (`lanjax.training.fit` + `classifier_update`, batch 128,
Adam 1e-3, seed 0, 2 CPU cores shared with other jobs, load average 8-15):
  MNIST-SDC softmax FCAM (this config's f.fcam): 0.7-1.4 steps/s; after 500
    steps test accuracy 0.984, FT 0.986 (strict), NNZ 2.27, Dist 0.084,
    Ent 0.280 (first 2,000 test mosaics). f.num_steps = 1,000 doubles that.
  MNIST-SDC MosaicCNN (16, 32, 32), global max pool, FC(64): 0.6-0.9
    steps/s; test accuracy 0.786 / 0.948 / 0.959 after 100 / 300 / 400
    steps (still rising: f.num_steps = 1,000 is a measured minimum, not a
    plateau; (32, 64, 64) ran ~4x slower per step).
  synthetic 'no_linear_focus', linear f and g, full batch of 200, Adam 1e-2:
    test accuracy 0.982, FT 0.646 after 1,000 steps (0.982 / 0.642 after
    3,000; 25 s): section 4.2 reproduced. With f = MLP(32) instead: accuracy
    1.000, FT 1.000. 'uniform_attention_suffices', linear f, g = MLP(32):
    accuracy 1.000, FT 0.661 (section 4.3).

Command:
  python train.py --config configs/sdc.py --workdir runs/sdc
  python train.py --config configs/sdc.py:synthetic --workdir runs/sdc_syn
"""

import os

import ml_collections

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def get_config(arg=None):
  """The SDC config; ``arg`` in {None, 'mnist', 'cifar', 'synthetic', 'quick'}."""
  config = ml_collections.ConfigDict()
  config.experiment = 'sdc'
  config.seed = 0
  config.fs = ('fcam', 'cnn')  # black boxes F trained and explained, one table each
  config.num_devices = 0
  config.distributed = False
  config.log_every = 100
  config.checkpoint_every = 1000
  config.evaluate_after_train = True

  config.data = ml_collections.ConfigDict()
  config.data.name = 'mnist'  # 'mnist', 'cifar10' or 'synthetic'
  config.data.synthetic = 'no_linear_focus'  # a lanjax.data.sdc.SYNTHETIC key
  config.data.data_dir = ''
  config.data.manual_dir = os.path.normpath(
      os.path.join(_REPO, '..', 'shared', 'data', 'mnist'))
  config.data.download = True
  config.data.fg_classes = (0, 1, 2)
  config.data.num_classes = 3  # k = len(fg_classes)
  config.data.num_segments = 9  # m, a 3x3 grid
  config.data.num_train = 30_000  # mosaics
  config.data.num_test = 10_000
  config.data.train_limit = 0  # 0: all base images
  config.data.test_limit = 0
  config.data.segment_shape = (28, 28, 1)

  config.f = ml_collections.ConfigDict()
  config.f.learning_rate = 1e-3
  config.f.batch_size = 128
  config.f.num_steps = 1_000
  config.f.eval_every = 250
  config.f.init_from = ''
  config.f.fcam = ml_collections.ConfigDict()
  config.f.fcam.attention = 'softmax'  # or 'sparsemax'
  config.f.fcam.average_at = 'input'  # the paper's zeroth layer; or 'features'
  config.f.fcam.entropy_weight = 0.0  # > 0: the entropy-regularised variant
  config.f.fcam.conv_features = (16, 32)
  config.f.fcam.focus_hidden = (64,)
  config.f.fcam.classifier_hidden = (64,)
  config.f.cnn = ml_collections.ConfigDict()
  config.f.cnn.features = (16, 32, 32)
  config.f.cnn.hidden = (64,)

  config.lan = ml_collections.ConfigDict()
  config.lan.hidden = (100,)
  config.lan.mask_shape = (84, 84, 1)
  config.lan.learning_rate = 1e-3
  config.lan.beta = 5.0
  config.lan.noise = 'bootstrap'
  config.lan.noise_value = 0.0
  config.lan.num_samples = 1
  config.lan.chunk_size = 0
  config.lan.chunk_memory_mb = 0
  config.lan.cpu_max_inputs = 1024
  config.lan.batch_size = 128
  config.lan.num_steps = 5_000

  config.eval = ml_collections.ConfigDict()
  config.eval.num_examples = 2_000
  config.eval.num_figure_examples = 6
  config.eval.ft_ties = 'strict'  # the paper's '>'; or 'random'
  config.eval.methods = ('alpha', 'lan', 'gradient', 'integrated_gradients',
                         'smoothgrad', 'occlusion', 'rise', 'mask_optimisation')
  config.eval.alpha_thresholds = (0.1, 0.3, 0.5, 0.7, 0.9)

  if arg in (None, 'mnist'):
    pass
  elif arg == 'cifar':
    config.data.name = 'cifar10'
    config.data.manual_dir = ''
    config.data.segment_shape = (32, 32, 3)
    config.f.fcam.conv_features = (32, 64, 64)
    config.f.cnn.features = (32, 64, 128, 128)
    config.lan.mask_shape = (96, 96, 1)
  elif arg == 'synthetic':
    config.fs = ('fcam',)  # a CNN needs image segments
    config.data.name = 'synthetic'
    config.data.num_train = 200
    config.data.num_test = 10_000
    config.data.segment_shape = (2,)
    config.f.fcam.conv_features = ()
    config.f.fcam.focus_hidden = ()  # linear f, as in section 4.2
    config.f.fcam.classifier_hidden = ()  # linear g
    config.f.batch_size = 200  # full batch
    config.f.learning_rate = 1e-2
    config.f.num_steps = 1_500
    config.lan.mask_shape = (9, 2)
    config.lan.hidden = (32,)
    config.lan.num_steps = 2_000
    config.eval.num_figure_examples = 0
  elif arg == 'quick':
    config.data.train_limit = 2_000
    config.data.test_limit = 500
    config.data.num_train = 500
    config.data.num_test = 200
    config.f.num_steps = 40
    config.f.eval_every = 20
    config.lan.num_steps = 20
    config.log_every = 10
    config.checkpoint_every = 20
    config.eval.num_examples = 100
    config.eval.num_figure_examples = 3
  else:
    raise ValueError(f'Unknown variant {arg!r}; expected mnist, cifar, '
                     'synthetic or quick.')
  return config
