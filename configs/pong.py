"""Atari Pong autoencoder: Grimm et al., section 5.4, Fig. 5 and 6 (appendix D).

Generates frames of ``ALE/Pong-v5`` played by a random policy (gymnasium +
ale-py, no download; 64x64x3 by area resize, the ball kept as the resize
leaves it; the TFDS dataset ``pong_frames`` prepared on first use), trains
the autoencoder F (Conv(16,2,5x5), Conv(32,2,5x5), Conv(64,2,5x5),
ConvTrans(32,2,5x5), ConvTrans(16,2,5x5), ConvTrans(3,2,5x5, sigmoid);
squared error), then the LAN A (FC(500, l-ReLU), FC(4096, sigmoid) reshaped
to 64x64x1 and tiled over the channels; L_F squared error; beta = 0.0005;
bootstrapped noise of training frames), and writes Fig. 5, Fig. 6 and
metrics.json (`lanjax.experiments.pong`).

Departures of the default (the paper's counts are the ``paper`` variant):
  * frames: 30,000 train / 3,000 held-out (the paper: 3.2M), 600 held-out
    frames evaluated. Frames are held in memory as uint8 (30k: 0.37 GB). The
    ``paper`` variant's 3.2M (39 GB) are read in windows of
    ``data.window_frames = 200,000`` frames (2.5 GB; `training.Windows`):
    F reads each window for 6,250 steps (200,000 / batch 32), so its
    100,000 steps are one pass over the 16 windows; A's 30,000 steps read
    windows 0-4. Reading a window from the prepared dataset takes about 20 s
    (10,000 frames/s measured, load average 3.4). Preparing the 3.2M frames
    holds one shard (10,000) at a time and takes about 20 minutes at the
    measured 2,800 frames/s (not run here).
  * F: 3,000 steps of Adam 1e-3 at batch 32 (the paper: 100,000 at 5e-5;
    at 5e-5 the held-out error was still 0.031 after 150 steps). At 700
    steps F blurred the paddles and a duplicate paddle in the paddle's
    column was kept only 13% (vs 5% elsewhere): the second claim failed.
  * A: 400 steps of Adam 1e-4 at batch 32 (the paper: 30,000 at 1e-5; 1e-4
    so that A moves in this budget: its mask mean went 0.5 -> 0.91 in 100
    steps and plateaued at 0.943).
  * The attribution comparison runs on 24 held-out frames with cheaper
    methods (SmoothGrad 16 samples, IG 16 steps, occlusion 8x8, RISE 100
    masks, eq. 3 per frame 50 steps); only the fully randomised F is
    checked (``eval.sanity_cascade = False``): with the cascade over F's 6
    layers it had not finished after 25 minutes at load 12-17. It adds
    about 4 minutes; ``--config.eval.compare_examples=0`` turns it off.

Measured (seed 0, 2-core CPU, load average 1-2, frames already prepared;
generating the 33,000 frames took 3.8 minutes at load 12-17): ``python
train.py --config configs/pong.py`` without the comparison took 9.3
minutes wall, 2.6 GB peak memory (F 3,000 steps at about 6 steps/s, A 400
steps at about 10 steps/s, evaluation); ``python evaluate.py`` with the
comparison took 5.9 minutes (load 2.5). Reached: F's held-out MSE 0.000074
(0.00044 at 500 steps, 0.00010 at 2,000), frames with the ball 0.000092,
without 0.000044; the ball is still not reconstructed (MSE on its pixels
0.072, 1.1% of it kept). A's mask is the same on every frame (relative
spread 3e-5 vs 0.29 for the same masks permuted) and puts 53% of the
importance on the paddles' columns (4.9% of the area); a duplicate paddle
is kept 90% in the paddle's column vs 7% elsewhere (240 placements each).
All four claims hold. The whole default command on a fresh data dir
(generation, training, evaluation with the comparison) took 17 minutes wall,
6.7 GB peak memory, at load 2-3, with the same numbers.

Variants (``--config configs/pong.py:VARIANT``):
  (none)  the default above.
  paper   the paper's counts: 3.2M frames (read in windows of 200,000),
          F 100,000 steps at 5e-5, A 30,000 steps at 1e-5.
  quick   a smoke run (a few hundred frames, a few steps).

Command:
  python train.py --config configs/pong.py --workdir runs/pong
  python evaluate.py --config configs/pong.py --workdir runs/pong
"""

from lanjax import config as config_lib


def get_config(arg=None):
  """The Pong autoencoder config; ``arg`` in {None, 'paper', 'quick'}."""
  config = config_lib.base_config('pong', dataset='pong_frames')
  config.log_every = 50
  config.checkpoint_every = 500

  d = config.data
  d.num_train = 30_000  # frames generated for training
  d.num_test = 3_000  # held-out frames (their own seeds)
  d.data_seed = 0  # the frames' seed (independent of config.seed)
  d.shard_size = 10_000  # frames per generated shard / game stream
  # 0: all training frames in memory; W > 0: read in windows of W frames, a
  # window per W / batch_size steps (a multiple of both batch sizes).
  d.window_frames = 0
  d.value_range = (0.0, 1.0)  # frames after scaling
  d.ball_threshold = 0.1  # ball share that makes a ball pixel

  config.f.features = (16, 32, 64)
  config.f.kernel_size = 5
  config.f.stride = 2
  config.f.learning_rate = 1e-3  # the paper: 5e-5 (see above)
  config.f.batch_size = 32
  config.f.num_steps = 3_000
  config.f.eval_every = 500

  config.lan.hidden = (500,)
  config.lan.mask_shape = (64, 64, 1)  # tiled over the 3 channels
  config.lan.learning_rate = 1e-4  # the paper: 1e-5 (see above)
  config.lan.beta = 0.0005
  config.lan.noise = 'bootstrap'  # training frames
  config.lan.num_samples = 1
  config.lan.batch_size = 32
  config.lan.num_steps = 400

  e = config.eval
  e.num_examples = 600  # held-out frames for the numbers
  e.num_figure_examples = 8  # Fig. 5
  e.num_placements = 60  # Fig. 6: per set (column / elsewhere), per screen
  e.num_base_frames = 4  # Fig. 6: base screens the duplicates go on
  e.duplicate_threshold = 0.25  # footprint share of a duplicate's pixel
  e.mse_claim = 0.002  # F "reconstructs" below this held-out MSE
  # The comparison on a 2-core CPU: fewer examples, cheaper methods.
  e.compare_examples = 24  # 0: no comparison (see above)
  e.compare_batch = 24
  e.curve_steps = 10
  e.sanity_lan_steps = 100
  e.method_settings.smoothgrad.num_samples = 16
  e.method_settings.integrated_gradients.num_steps = 16
  e.method_settings.occlusion.window = 8
  e.method_settings.occlusion.stride = 8
  e.method_settings.rise.num_masks = 100
  e.method_settings.mask_optimisation.num_steps = 50
  e.method_settings.mask_optimisation.num_samples = 2

  if arg == 'paper':
    d.num_train = 3_200_000
    d.num_test = 100_000
    d.window_frames = 200_000  # 2.5 GB of uint8 frames at a time
    config.f.num_steps = 100_000
    config.f.learning_rate = 5e-5
    config.f.eval_every = 5_000
    config.lan.num_steps = 30_000
    config.lan.learning_rate = 1e-5
    config.checkpoint_every = 5_000
  elif arg == 'quick':
    config_lib.quick_eval(config)
    d.num_train = 256
    d.num_test = 128
    d.shard_size = 128
    config.f.num_steps = 20
    config.f.batch_size = 8
    config.f.eval_every = 10
    config.lan.num_steps = 10
    config.lan.batch_size = 8
    config.lan.num_samples = 2
    config.log_every = 10
    config.checkpoint_every = 10
    e.num_examples = 64
    e.removals = ('noise',)  # one operator: fewer compilations
    e.num_placements = 8
    e.num_base_frames = 1
    e.compare_examples = 8  # the comparison runs in quick
    e.compare_batch = 8
    e.method_settings.occlusion.window = 16
    e.method_settings.occlusion.stride = 16
  elif arg == 'gpu':
    config_lib.gpu_variant(config)
  elif arg:
    raise ValueError(f'Unknown variant {arg!r}; expected paper, quick or '
                     'gpu.')
  return config
