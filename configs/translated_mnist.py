"""Translated MNIST: Grimm et al., section 5.1, Fig. 2 and 3a-d (appendix A).

Trains, for the ``standard`` domain (12x12 digits anywhere on a 28x28 canvas)
and the ``corner`` domain (never in the bottom-right 12x12 region), the
classifier F (Conv(10,2,4x4), Conv(20,2,4x4), FC(10); Adam 1e-3, batch 128)
and then the LAN A (FC(100), FC(784, sigmoid); beta = 5, bootstrapped noise
of translated training digits), and writes Fig. 2, 3a-d and metrics.json.

Expected (default, seed 0; README has the full table): F test accuracy 0.950
(standard) / 0.955 (corner); importance mass in the digit's box 0.48 vs the
box's 0.18 area share; pointing game 0.92; F accuracy on digits in the
excluded corner 0.045 vs 0.96 elsewhere. All twelve `claims` true.

Variants (``--config configs/translated_mnist.py:VARIANT``):
  (none)  the default: F 30,000 steps (the paper: 100,000), A 5,000 steps at
          Adam 1e-3 (the paper: 100,000 at 1e-4; our loss plateaus by ~5,000;
          10,000 until 2026-12-07, same claims, mask means within 0.01).
          Runtime: 407-541 s wall for both domains with evaluation and
          the attribution comparison on the 2-core CPU (/usr/bin/time, two
          runs on 2026-12-07: this machine's speed drifts; 677 s on
          2026-11-23 with A at 10,000 steps and one step per call). Shorter F schedules, measured and not adopted:
          F 10,000 steps at Adam 2e-3 and A 5,000 steps ran in 280 s wall
          (quiet), F 0.944 in both domains, but
          corner/accuracy_falls_at_border failed (0.091 [0.029, 0.148]
          against 0.122 [0.065, 0.174] here; its interval is over canvas
          positions, so 4,000 small digits instead of 1,000 left it at
          [0.031, 0.145] and cost 107 s); the other 11 claims held. F 15,000
          steps at Adam 2e-3 and A 3,000 steps: 331 s wall (load under 1), F
          0.941 / 0.954, the same claim failed again (0.101 [0.038, 0.161];
          the standard domain's holds, 0.155 [0.129, 0.181]), the other 11
          held. F 15,000 steps at Adam 2e-3 decayed by a cosine
          (`--config.f.lr_schedule=cosine`), A 5,000, corner domain alone:
          125 s wall, F 0.951, the same claim failed (0.1045 [0.047,
          0.160]), the other 6 held: the corner F's border accuracy gap does
          not close below 30,000 steps on this evidence.
  paper   the paper's schedule: 100,000 iterations for F and for A, A at
          Adam 1e-4.
  quick   a smoke run in well under a minute (tiny data, a few steps).

Command:
  python train.py --config configs/translated_mnist.py --workdir runs/mnist
  python evaluate.py --config configs/translated_mnist.py --workdir runs/mnist
"""

from lanjax import config as config_lib


def get_config(arg=None):
  """The translated-MNIST config; ``arg`` in {None, 'paper', 'quick'}."""
  config = config_lib.base_config(
      'translated_mnist', dataset='mnist',
      manual_dir=config_lib.shared_data_dir('mnist'))
  config.domains = ('standard', 'corner')

  config.data.value_range = (0.0, 1.0)  # pixels after scaling; checked on load
  config.data.canvas = 28
  config.data.digit_size = 12
  config.data.small_digit_size = 7  # Fig. 3b
  config.data.corner_size = 12  # Fig. 3c-d: excluded bottom-right region

  config.f.features = (10, 20)
  config.f.kernel_size = 4
  config.f.stride = 2
  config.f.learning_rate = 1e-3
  config.f.batch_size = 128
  config.f.num_steps = 30_000
  config.f.eval_every = 2_000

  config.lan.hidden = (100,)
  config.lan.learning_rate = 1e-3
  config.lan.beta = 5.0
  config.lan.noise = 'bootstrap'  # translated training digits
  config.lan.num_samples = 1
  config.lan.batch_size = 128
  config.lan.num_steps = 5_000

  config.eval.num_examples = 10_000
  config.eval.num_figure_examples = 8
  config.eval.small_digit_examples = 1_000
  config.eval.border_width = 3
  config.eval.centre_halfwidth = 5
  config.eval.compare_domains = ('standard',)  # the attribution comparison

  if arg == 'paper':
    config.f.num_steps = 100_000
    config.lan.num_steps = 100_000
    config.lan.learning_rate = 1e-4
    config.checkpoint_every = 5_000
    config.f.eval_every = 5_000
  elif arg == 'quick':
    config_lib.quick_eval(config)
    config.data.train_limit = 2_000
    config.data.test_limit = 500
    config.f.num_steps = 100
    config.f.learning_rate = 3e-3
    config.f.eval_every = 50
    config.lan.num_steps = 40
    config.lan.num_samples = 2
    config.log_every = 20
    config.checkpoint_every = 30
    config.eval.num_examples = 500
    config.eval.small_digit_examples = 100
  elif arg == 'gpu':
    config_lib.gpu_variant(config)
  elif arg:
    raise ValueError(f'Unknown variant {arg!r}; expected paper, quick or '
                     'gpu.')
  return config
