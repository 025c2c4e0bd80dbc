"""Atari Pong autoencoder: Grimm et al., section 5.4, Fig. 5 and 6 (appendix D).

DRAFT (issue 12): the experiment pieces exist (`lanjax.data.pong`,
`lanjax.models.ConvAutoencoder`, `autoencoder_update`, the figure functions);
the experiment module that reads this config is wired in by the lead.

Generates frames of ``ALE/Pong-v5`` played by a random policy (gymnasium +
ale-py, no download; 64x64x3 by area resize; the TFDS dataset ``pong_frames``
prepared on first use), trains the autoencoder F (Conv(16,2,5x5),
Conv(32,2,5x5), Conv(64,2,5x5), ConvTrans(32,2,5x5), ConvTrans(16,2,5x5),
ConvTrans(3,2,5x5, sigmoid); squared error; Adam 5e-5 in the paper) and then the LAN A
(FC(500, l-ReLU), FC(4096, sigmoid) reshaped to 64x64x1 and tiled over the
channels; L_F squared error; beta = 0.0005; bootstrapped noise of training
frames; Adam 1e-5), and writes Fig. 5, Fig. 6 and metrics.json.

Departures (default variant), measured on the 2-core CPU shared with other
jobs (issue 12 report; wall times vary 2-3x with the load):
  * frames: 100,000 train / 5,000 held-out (the paper: 3.2M). Generating
    costs ~1.2 ms of CPU per frame (emulator ~0.5 ms, exact area resize
    ~0.4 ms, zlib + array_record write); 32,000 frames took 241 s wall
    under load. 100k frames are 1.2 GB as uint8 in memory (the batch is
    drawn inside the jitted step); 3.2M would be 39 GB: the ``paper``
    variant needs a streaming input pipeline (not written yet).
  * F: Adam 1e-3 at batch 32 for 4,000 steps (the paper: 5e-5, 100,000
    steps, batch not given). Measured: a step costs ~0.32 s of CPU at batch
    32 (0.55 s at 64; the transposed convolutions dominate), 2.4 steps/s
    wall. At 5e-5 (batch 64) held-out MSE was still 0.031 after 150 steps;
    at 1e-3 (batch 32) it was 0.0040 after 50, 0.00071 after 200 and
    0.00043 after 450 steps, but the ball was not reconstructed yet (ball
    pixels' MSE 0.073, ball share kept 0.02): whether 4,000 steps bring the
    ball back is to be read from metrics.json of the first full run.
  * A: 3,000 steps at batch 32 (the paper: 30,000), Adam 1e-5, beta 0.0005.

Variants (``--config configs/pong.py:VARIANT``):
  (none)  the default above.
  paper   the paper's counts: 3.2M frames, F 100,000 and A 30,000 steps.
  quick   a smoke run (2,000 frames, a few steps).

Command:
  python train.py --config configs/pong.py --workdir runs/pong
  python evaluate.py --config configs/pong.py --workdir runs/pong
"""

import ml_collections


def get_config(arg=None):
  """The Pong autoencoder config; ``arg`` in {None, 'paper', 'quick'}."""
  config = ml_collections.ConfigDict()
  config.experiment = 'pong'
  config.seed = 0
  config.num_devices = 0  # 0: all devices (data parallel over the batch)
  config.distributed = False
  config.log_every = 200
  config.checkpoint_every = 1000
  config.evaluate_after_train = True

  config.data = ml_collections.ConfigDict()
  config.data.name = 'pong_frames'
  config.data.data_dir = ''  # '' -> $TFDS_DATA_DIR -> ~/tensorflow_datasets
  config.data.num_train = 100_000  # frames generated for training
  config.data.num_test = 5_000  # held-out frames (their own seeds)
  config.data.data_seed = 0  # the frames' seed (independent of config.seed)
  config.data.shard_size = 10_000  # frames per generated shard / game stream
  config.data.value_range = (0.0, 1.0)  # frames after scaling; checked on load
  config.data.ball_threshold = 0.1  # ball share that makes a ball pixel

  config.f = ml_collections.ConfigDict()
  config.f.features = (16, 32, 64)
  config.f.kernel_size = 5
  config.f.stride = 2
  config.f.learning_rate = 1e-3  # the paper: 5e-5 (see above)
  config.f.batch_size = 32
  config.f.num_steps = 4_000
  config.f.eval_every = 1_000
  config.f.init_from = ''  # a previous run's workdir: explain its F

  config.lan = ml_collections.ConfigDict()
  config.lan.hidden = (500,)
  config.lan.mask_shape = (64, 64, 1)  # tiled over the 3 channels
  config.lan.learning_rate = 1e-5
  config.lan.beta = 0.0005
  config.lan.output_loss = 'squared_error'
  config.lan.noise = 'bootstrap'  # training frames
  config.lan.noise_value = 0.0
  config.lan.num_samples = 1
  config.lan.chunk_size = 0
  config.lan.chunk_memory_mb = 0
  config.lan.cpu_max_inputs = 1024
  config.lan.batch_size = 32
  config.lan.num_steps = 3_000

  config.eval = ml_collections.ConfigDict()
  config.eval.num_examples = 2_000  # held-out frames for the numbers
  config.eval.num_figure_examples = 8  # Fig. 5
  config.eval.num_placements = 200  # Fig. 6: per set (column / elsewhere)
  config.eval.num_base_frames = 5  # Fig. 6: base screens the duplicates go on
  config.eval.duplicate_threshold = 0.25  # footprint share of a dup. pixel

  if arg == 'paper':
    config.data.num_train = 3_200_000
    config.data.num_test = 100_000
    config.f.num_steps = 100_000
    config.f.learning_rate = 5e-5
    config.lan.num_steps = 30_000
    config.checkpoint_every = 5_000
    config.f.eval_every = 5_000
  elif arg == 'quick':
    config.data.num_train = 2_000
    config.data.num_test = 500
    config.data.shard_size = 1_000
    config.f.num_steps = 60
    config.f.learning_rate = 1e-3
    config.f.batch_size = 16
    config.f.eval_every = 30
    config.lan.num_steps = 30
    config.lan.batch_size = 8
    config.lan.num_samples = 2
    config.log_every = 20
    config.checkpoint_every = 30
    config.eval.num_examples = 200
    config.eval.num_placements = 20
    config.eval.num_base_frames = 2
  elif arg:
    raise ValueError(f'Unknown variant {arg!r}; expected paper or quick.')
  return config
