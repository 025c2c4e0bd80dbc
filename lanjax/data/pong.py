"""Atari Pong frames, as in Grimm et al. (section 5.4, appendix D).

Frames of ``ALE/Pong-v5`` (gymnasium + ale-py; the ale-py wheel ships the
ROM) played by a uniformly random policy, with the environment's v5 defaults
(frameskip 4, sticky actions 0.25). Each 210x160 RGB screen is reduced to
64x64x3 by an exact *area* resize (`area_resize`: every output pixel is the
mean of the screen area it covers, fractional overlaps weighted), then
rounded to uint8.

Determinism: frames come in shards of ``shard_size`` frames; shard ``s`` of
split ``split`` is one run of its own environment, seeded from
``(seed, split, s)`` (`shard_seeds`), starting a new game. A frame is thus a
function of ``(seed, split, index)`` alone, whatever the number of shards
generated before it or at once, and no more than one shard is ever in memory.

The ball. On the screen the ball is 4 rows x 2 columns of the wall's white
(8 pixels). After the 210x160 -> 64x64 area resize (3.28 x 2.5 screen pixels
per output pixel) it covers 1 to 4 output pixels partially. Measured on
20,000 frames (seed 0; the ball is on the screen in 64% of them, the rest
are between points): its brightest output pixel is median 0.53 white over
the background (max 0.80), at least 0.5 in 57% of the ball frames (a dot of
one strong pixel, otherwise two weaker ones), at least 0.25 in 99.9% (min
0.07, when the ball is cut by a wall or a paddle). The plain area resize is
kept (no dilation): the ball stays visible; `object_maps` finds it.

Layout of everything returned here: frames ``(N, 64, 64, 3)``, uint8 in
[0, 255] as stored, float32 in [0, 1] for the networks (`to_float`); maps
``(N, 64, 64)``.

Importing this module registers the TFDS dataset ``pong_frames``
(`PongFrames`): ``tfds.data_source('pong_frames')`` reads it (array_record, no
TensorFlow), and preparing it (`load`) runs the emulator (no download; no
TensorFlow needed either: frames are stored as zlib-compressed tensors).

Evaluation pieces (pure NumPy/JAX functions) for Fig. 5 and 6: colour-based
object maps (`object_maps`: how much of each pixel is ball, player's paddle,
opponent's paddle), the paddles' column regions (`column_region`), crafted
frames with a duplicate of the player's paddle (`craft_duplicates`,
`duplicate_placements`) and the errors of a reconstruction on them
(`duplicate_errors`, `reconstruction_errors`). How much masks change across
frames is `lanjax.metrics.mask_spread`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Iterator, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds

from lanjax import validation
from lanjax.data import tfds_data

NAME = 'pong_frames'
ENV_ID = 'ALE/Pong-v5'
SCREEN = (210, 160)  # rows, columns of the emulator's RGB screen
SIZE = (64, 64)  # the paper's frame size

# ALE Pong's palette (RGB), identical in every frame.
BACKGROUND = (144, 72, 17)
WHITE = (236, 236, 236)  # the walls and the ball
PLAYER = (92, 186, 92)  # the agent's (right, green) paddle and score
OPPONENT = (213, 130, 74)  # the computer's (left, orange) paddle and score

# Geometry on the screen, [start, stop) in screen pixels.
FIELD_ROWS = (34, 194)  # between the walls: where the paddles and ball move
TOP_WALL_ROWS = (24, 34)
BOTTOM_WALL_ROWS = (194, 210)
PLAYER_COLS = (140, 144)
OPPONENT_COLS = (16, 20)
PADDLE_SHAPE = (16, 4)  # rows, columns
BALL_SHAPE = (4, 2)

OBJECTS = ('ball', 'player', 'opponent')  # channels of `object_maps`

SPLITS = ('train', 'test')


# ----------------------------------------------------------------------------
# Area resize.


@functools.cache
def area_matrix(n_in: int, n_out: int) -> np.ndarray:
  """Weights ``(n_out, n_in)`` of a 1-D area (box) resize; rows sum to 1.

  Output pixel ``i`` covers the input interval ``[i s, (i + 1) s)`` with
  ``s = n_in / n_out``; its weight on input pixel ``j`` is the length of
  ``[j, j + 1)`` inside that interval, divided by ``s``.

  Example:
    >>> area_matrix(4, 2)
    array([[0.5, 0.5, 0. , 0. ],
           [0. , 0. , 0.5, 0.5]])
  """
  if n_in < 1 or n_out < 1:
    raise ValueError(f'Sizes must be positive, got n_in={n_in}, '
                     f'n_out={n_out}.')
  s = n_in / n_out
  lo = np.arange(n_out)[:, None] * s
  j = np.arange(n_in)[None, :]
  overlap = np.clip(np.minimum(j + 1, lo + s) - np.maximum(j, lo), 0, None)
  return overlap / s


def area_resize(images, size: Sequence[int] = SIZE) -> np.ndarray:
  """Area resize of ``(..., H, W, C)`` images to ``(..., h, w, C)`` float64.

  The exact box filter (what OpenCV's ``INTER_AREA`` and PIL's ``BOX``
  compute): each output pixel is the mean of the input area it covers, i.e.
  ``area_matrix(H, h) @ image @ area_matrix(W, w).T`` per channel. It is
  linear and keeps the image's mean.

  Computed band by band (an output pixel covers at most ``ceil(H / h) + 1``
  input rows), with the integer weights ``area_matrix * H`` (and ``* W``).
  For uint8 images that is done in float32, where every partial sum is an
  integer below 2**24 and thus exact: the result, and its rounding to uint8,
  are the same on every machine.
  """
  images = np.asarray(images)
  if images.ndim < 3:
    raise ValueError(f'images must be (..., H, W, C); got shape '
                     f'{images.shape}.')
  h, w = images.shape[-3:-1]
  exact = images.dtype == np.uint8 and 255 * h * w < 2**24
  x = images.astype(np.float32 if exact else np.float64)
  x = _banded_sum(x, int(size[0]), images.ndim - 3, exact)
  x = _banded_sum(x, int(size[1]), images.ndim - 2, exact)
  return x.astype(np.float64) / (h * w)


@functools.cache
def _bands(n_in: int, n_out: int, exact: bool):
  """``(start (n_out,), weights (K, n_out))``: nonzero band of area_matrix."""
  m = area_matrix(n_in, n_out) * n_in  # integer where n_in, n_out are
  if exact:
    m = np.rint(m)
  width = int(np.ceil(n_in / n_out)) + 1
  start = np.minimum(np.argmax(m > 0, axis=1), max(n_in - width, 0))
  idx = np.minimum(start[None, :] + np.arange(width)[:, None], n_in - 1)
  weights = np.where(start[None, :] + np.arange(width)[:, None] < n_in,
                     np.take_along_axis(m.T, idx, 0), 0.0)
  return idx, weights


def _banded_sum(x, n_out: int, axis: int, exact: bool):
  idx, weights = _bands(x.shape[axis], n_out, exact)
  shape = [1] * x.ndim
  shape[axis] = n_out
  out = 0
  for k in range(idx.shape[0]):
    out = out + (np.take(x, idx[k], axis=axis)
                 * weights[k].astype(x.dtype).reshape(shape))
  return out


def resize_frames(screens) -> np.ndarray:
  """Screens ``(..., 210, 160, 3)`` uint8 -> frames ``(..., 64, 64, 3)`` uint8."""
  screens = np.asarray(screens)
  out = []  # in chunks of 32 screens: the products stay in the caches
  flat = screens.reshape((-1,) + screens.shape[-3:])
  for i in range(0, max(len(flat), 1), 32):
    out.append(area_resize(flat[i:i + 32], SIZE))
  out = np.concatenate(out) if out else np.zeros((0,) + SIZE + (3,))
  out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
  return out.reshape(screens.shape[:-3] + out.shape[1:])


def to_float(frames):
  """uint8 frames in [0, 255] -> float32 in [0, 1] (NumPy or JAX, jit-safe)."""
  xp = jnp if isinstance(frames, jax.Array) else np
  return xp.asarray(frames).astype(xp.float32) / 255.0


# ----------------------------------------------------------------------------
# Playing.


def shard_seeds(seed: int, split: str, shard: int) -> tuple[int, int]:
  """``(environment seed, policy seed)`` of one shard, from the dataset seed."""
  if split not in SPLITS:
    raise ValueError(f'split must be one of {SPLITS}, got {split!r}.')
  state = np.random.SeedSequence(
      [int(seed), SPLITS.index(split), int(shard)]).generate_state(2)
  return int(state[0] % (2**31 - 1)), int(state[1])


def make_env(**kwargs):
  """``gym.make('ALE/Pong-v5', **kwargs)`` with the ALE namespace registered."""
  try:
    import ale_py  # pylint: disable=g-import-not-at-top
    import gymnasium as gym  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        'Generating Pong frames needs gymnasium and ale-py (the ale-py wheel '
        'ships the Pong ROM): pip install "gymnasium==1.4.0" "ale-py==0.12.1" '
        '(or pip install -r requirements.txt).') from e
  gym.register_envs(ale_py)
  return gym.make(ENV_ID, **kwargs)


def play(env_seed: int, policy_seed: int, num_frames: int) -> Iterator[
    tuple[np.ndarray, int, int]]:
  """Screens of games played by a uniformly random policy.

  Every screen is the one after a step; the screen ``reset`` returns is left
  out (it is drawn in another palette). A finished game is followed by a new
  one (reset without a new seed: the emulator's stream goes on).

  Args:
    env_seed: seeds the emulator (its sticky actions).
    policy_seed: seeds the random actions.
    num_frames: how many screens to yield.

  Yields:
    ``(screen (210, 160, 3) uint8, episode, step in episode)``, steps from 1.
  """
  env = make_env()
  try:
    rng = np.random.default_rng(policy_seed)
    n_actions = int(env.action_space.n)
    env.reset(seed=env_seed)
    episode, step = 0, 0
    for _ in range(num_frames):
      screen, _, terminated, truncated, _ = env.step(
          int(rng.integers(n_actions)))
      step += 1
      yield screen, episode, step
      if terminated or truncated:
        env.reset()
        episode, step = episode + 1, 0
  finally:
    env.close()


def ball_on_screen(screens) -> np.ndarray:
  """``(...)`` bool: whether the ball is on each ``(..., 210, 160, 3)`` screen.

  The ball is the only white inside the play field (the walls are outside).
  """
  field = np.asarray(screens)[..., FIELD_ROWS[0]:FIELD_ROWS[1], :, :]
  return (field == np.asarray(WHITE, np.uint8)).all(-1).any((-1, -2))


def generate_shard(seed: int, split: str, shard: int,
                   num_frames: int) -> dict[str, np.ndarray]:
  """The frames of one shard (deterministic from its arguments).

  Returns:
    ``{'image': (n, 64, 64, 3) uint8, 'ball': (n,) bool (ball on the screen),
    'episode': (n,) int32, 'step': (n,) int32}``.
  """
  env_seed, policy_seed = shard_seeds(seed, split, shard)
  images = np.empty((num_frames,) + SIZE + (3,), np.uint8)
  ball = np.empty(num_frames, bool)
  episode = np.empty(num_frames, np.int32)
  step = np.empty(num_frames, np.int32)
  chunk = []
  start = 0

  def flush(chunk, start):
    screens = np.stack(chunk)
    images[start:start + len(chunk)] = resize_frames(screens)
    ball[start:start + len(chunk)] = ball_on_screen(screens)

  for i, (screen, ep, t) in enumerate(play(env_seed, policy_seed,
                                           num_frames)):
    chunk.append(screen)
    episode[i], step[i] = ep, t
    if len(chunk) == 256:
      flush(chunk, start)
      start += len(chunk)
      chunk = []
  if chunk:
    flush(chunk, start)
  return {'image': images, 'ball': ball, 'episode': episode, 'step': step}


# ----------------------------------------------------------------------------
# The TFDS dataset.


@dataclasses.dataclass
class PongConfig(tfds.core.BuilderConfig):
  """How many frames, from which seed.

  Attributes:
    num_train: training frames.
    num_test: held-out frames (their own shards and seeds).
    seed: the dataset seed (see `shard_seeds`).
    shard_size: frames per shard (one game stream each).
  """
  num_train: int = 0
  num_test: int = 0
  seed: int = 0
  shard_size: int = 10_000


def config(num_train: int, num_test: int, *, seed: int = 0,
           shard_size: int = 10_000) -> PongConfig:
  """A `PongConfig` named after its numbers (its own directory in TFDS)."""
  for name, v in (('num_train', num_train), ('num_test', num_test)):
    if int(v) != v or v < 1:
      raise ValueError(f'{name} must be a positive int, got {v!r}.')
  if int(shard_size) != shard_size or shard_size < 1:
    raise ValueError(f'shard_size must be a positive int, got '
                     f'{shard_size!r}.')
  return PongConfig(
      name=f'n{num_train}_{num_test}_seed{seed}_shard{shard_size}',
      description=f'{num_train} train / {num_test} test frames, seed {seed}.',
      num_train=int(num_train), num_test=int(num_test), seed=int(seed),
      shard_size=int(shard_size))


class PongFrames(tfds.core.ShardBasedBuilder):
  """Atari Pong frames (random policy), 64x64x3, generated by the emulator.

  Each shard of ``shard_size`` frames (`generate_shard`) is generated and
  written to its own file before the next one is generated: preparing holds
  one shard of frames in memory, whatever the number of frames. (A
  ``GeneratorBasedBuilder`` with unshuffled integer keys puts every example
  of a split in one of TFDS's sort buckets and reads that bucket back into
  memory at the end: the whole split at once.)
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {
      '1.0.0': 'ALE/Pong-v5 (v5 defaults), uniformly random policy, area '
               'resize 210x160 -> 64x64, sharded seeds.',
  }
  BUILDER_CONFIGS = [
      # The few hundred frames the tests prepare.
      config(256, 128, shard_size=128),
      # The default of configs/pong.py.
      config(30_000, 3_000),
      # The paper's count (3.2M frames; 39 GB as raw uint8, zlib brings it to
      # a fraction of that).
      config(3_200_000, 100_000),
  ]
  DEFAULT_CONFIG_NAME = 'n30000_3000_seed0_shard10000'

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            'Frames of ALE/Pong-v5 played by a uniformly random policy '
            '(frameskip 4, sticky actions 0.25), area-resized from 210x160 '
            'to 64x64x3, as in Grimm et al., appendix D. Generated by the '
            'emulator (gymnasium + ale-py); no download.'),
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=SIZE + (3,), dtype=np.uint8,
                                          encoding='zlib'),
            'ball': np.bool_,  # the ball is on the 210x160 screen
            'episode': np.int32,  # game number within the shard
            'step': np.int32,  # step within the game
        }),
        disable_shuffling=True,  # frames in play order
        homepage='https://ale.farama.org/environments/pong/',
    )

  def _shard_iterators_per_split(self, dl_manager):
    del dl_manager  # nothing to download
    cfg = self.builder_config
    return {split: [functools.partial(self._shard_examples, split, shard,
                                      start, min(cfg.shard_size, n - start))
                    for shard, start in enumerate(range(0, n,
                                                        cfg.shard_size))]
            for split, n in (('train', cfg.num_train),
                             ('test', cfg.num_test))}

  def _shard_examples(self, split, shard, start, num_frames):
    """The examples of one shard: ``(index, example)`` in play order."""
    frames = generate_shard(self.builder_config.seed, split, shard,
                            num_frames)
    for j in range(num_frames):
      yield start + j, {k: v[j] for k, v in frames.items()}


def builder_kwargs(cfg: PongConfig) -> dict:
  """``builder_kwargs`` for ``tfds.builder`` / ``tfds.data_source``.

  A config equal to one of `PongFrames.BUILDER_CONFIGS` is passed by name
  (TFDS refuses a config object named like a built-in one).
  """
  for known in PongFrames.BUILDER_CONFIGS:
    if known.name == cfg.name:
      return {'config': cfg.name}
  return {'config': cfg}


def source(split: str, *, num_train: int, num_test: int, seed: int = 0,
           shard_size: int = 10_000, data_dir: Optional[str] = None):
  """The random-access data source of one split, prepared on first use.

  ``len(source)`` frames; ``source[i]`` (or ``source.__getitems__(idx)``)
  reads examples ``{'image', 'ball', 'episode', 'step'}`` from disk, so a
  split larger than memory is read a part at a time
  (`lanjax.training.windows.from_source`).
  """
  if split not in SPLITS:
    raise ValueError(f'split must be one of {SPLITS}, got {split!r}.')
  cfg = config(num_train, num_test, seed=seed, shard_size=shard_size)
  return tfds_data.data_source(NAME, split, data_dir=data_dir, download=True,
                               builder_kwargs=builder_kwargs(cfg))


def load(split: str, *, num_train: int, num_test: int, seed: int = 0,
         shard_size: int = 10_000, data_dir: Optional[str] = None,
         limit: Optional[int] = None,
         keys: Sequence[str] = ('image', 'ball')) -> dict[str, np.ndarray]:
  """Frames of one split as NumPy arrays, generated and prepared on first use.

  Args:
    split: ``'train'`` or ``'test'``.
    num_train, num_test, seed, shard_size: the dataset (see `config`).
    data_dir: the TFDS data dir (default: ``$TFDS_DATA_DIR``, else
      ``~/tensorflow_datasets``).
    limit: read only the first ``limit`` frames (all of them are generated).
    keys: the features to read.

  Returns:
    ``{'image': (N, 64, 64, 3) uint8, 'ball': (N,) bool, ...}``, range
    checked.
  """
  if split not in SPLITS:
    raise ValueError(f'split must be one of {SPLITS}, got {split!r}.')
  cfg = config(num_train, num_test, seed=seed, shard_size=shard_size)
  out = tfds_data.load_arrays(NAME, split, keys, data_dir=data_dir,
                              download=True, limit=limit,
                              builder_kwargs=builder_kwargs(cfg))
  if 'image' in out:
    validation.check_range(out['image'], low=0, high=255,
                           name=f'Pong {split} frames')
  return out


def sample_batch(data, key, *, batch_size: int):
  """A batch of frames drawn uniformly (with replacement); jit-safe.

  Args:
    data: ``{'frames': (N, 64, 64, 3) uint8}`` (device arrays).
    key: PRNG key.
    batch_size: ``B``.

  Returns:
    ``(B, 64, 64, 3)`` float32 in [0, 1].
  """
  frames = data['frames']
  idx = jax.random.randint(key, (batch_size,), 0, frames.shape[0])
  return jnp.take(frames, idx, axis=0).astype(jnp.float32) / 255.0


# ----------------------------------------------------------------------------
# Objects, by colour.


def _screen_with(rows, cols, colour, base=None):
  screen = (np.broadcast_to(np.asarray(BACKGROUND, np.float64),
                            SCREEN + (3,)).copy() if base is None else base)
  screen[rows[0]:rows[1], cols[0]:cols[1]] = colour
  return screen


@functools.cache
def background() -> np.ndarray:
  """The empty field at 64x64 (float64, [0, 255]): background and walls."""
  screen = _screen_with(TOP_WALL_ROWS, (0, SCREEN[1]), WHITE)
  screen = _screen_with(BOTTOM_WALL_ROWS, (0, SCREEN[1]), WHITE, screen)
  return area_resize(screen)


def field_region() -> np.ndarray:
  """``(64, 64)`` bool: output pixels that cover any of the play field."""
  return _region(FIELD_ROWS, (0, SCREEN[1]))


def column_region(cols: Sequence[int] = PLAYER_COLS) -> np.ndarray:
  """``(64, 64)`` bool: the play field's rows in screen columns ``cols``.

  ``column_region(PLAYER_COLS)`` is the player's paddle's column (where it can
  be), ``column_region(OPPONENT_COLS)`` the opponent's: every output pixel
  that covers any of it.
  """
  return _region(FIELD_ROWS, cols)


def _region(rows, cols) -> np.ndarray:
  cover = area_matrix(SCREEN[0], SIZE[0])[:, rows[0]:rows[1]].sum(1)
  cover_c = area_matrix(SCREEN[1], SIZE[1])[:, cols[0]:cols[1]].sum(1)
  return (cover[:, None] > 1e-9) & (cover_c[None, :] > 1e-9)


@functools.cache
def _unmixing() -> np.ndarray:
  colours = np.asarray([WHITE, PLAYER, OPPONENT], np.float64)
  return np.linalg.inv(colours - np.asarray(BACKGROUND, np.float64))


def object_maps(frames) -> jax.Array:
  r"""How much of each pixel is ball, player's paddle, opponent's paddle.

  Area resizing is linear, so inside the play field a frame pixel is the
  background mixed with the objects it covers,

  .. math:: x = b + \sum_k p_k (c_k - c_{bg}),

  with ``b`` the empty field (`background`, walls included), ``c_k`` the
  colours of the ball (white), the player's and the opponent's paddles, and
  ``p_k`` the share of the pixel each object covers. The three colours are
  independent, so the shares are read back exactly (up to rounding to
  uint8: about 0.01). Pixels outside the play field get 0.

  Works on any frame in the palette (real, crafted, or a reconstruction,
  where the shares say how much of each colour F put back).

  Args:
    frames: ``(..., 64, 64, 3)`` in [0, 1] (float) or [0, 255] (uint8).

  Returns:
    ``(..., 64, 64, 3)`` float32 shares in [0, 1], channels `OBJECTS`.
  """
  frames = jnp.asarray(frames)
  if frames.shape[-3:] != SIZE + (3,):
    raise ValueError(f'frames must be (..., {SIZE[0]}, {SIZE[1]}, 3); got '
                     f'shape {frames.shape}.')
  scale = 1.0 if jnp.issubdtype(frames.dtype, jnp.integer) else 255.0
  delta = frames.astype(jnp.float32) * scale - background().astype(np.float32)
  shares = delta @ jnp.asarray(_unmixing(), jnp.float32)
  shares = jnp.clip(shares, 0.0, 1.0)
  return jnp.where(field_region()[..., None], shares, 0.0)


def ball_region(frames, *, threshold: float = 0.1) -> jax.Array:
  """``(..., 64, 64)`` bool: pixels at least ``threshold`` ball."""
  return object_maps(frames)[..., 0] >= threshold


def paddle_rows(screen, colour=PLAYER) -> Optional[tuple[int, int]]:
  """``[start, stop)`` screen rows of a paddle in the field, or None."""
  field = np.asarray(screen)[FIELD_ROWS[0]:FIELD_ROWS[1]]
  cols = PLAYER_COLS if tuple(colour) == PLAYER else OPPONENT_COLS
  hit = (field[:, cols[0]:cols[1]] == np.asarray(colour, np.uint8)).all(-1)
  rows = np.flatnonzero(hit.any(-1))
  if rows.size == 0:
    return None
  return int(rows[0]) + FIELD_ROWS[0], int(rows[-1]) + 1 + FIELD_ROWS[0]


# ----------------------------------------------------------------------------
# Evaluation: masks and reconstructions.


def reconstruction_errors(x, recon, *, threshold: float = 0.1
                          ) -> dict[str, jax.Array]:
  """Squared errors of reconstructions, over the frame and on the ball.

  Args:
    x: frames ``(B, 64, 64, 3)`` in [0, 1].
    recon: F's reconstructions, same shape.
    threshold: ball share that makes a pixel part of the ball (`ball_region`).

  Returns:
    Per example ``(B,)``: ``'mse'`` over all pixels; ``'mse_ball'`` over the
    ball's pixels (NaN where the frame has no ball); ``'mse_rest'`` over the
    other pixels; ``'ball_kept'``, the ball's share summed over its pixels in
    the reconstruction over the same in the input (1: the ball is
    reconstructed, 0: it is gone; NaN without a ball).
  """
  x = jnp.asarray(x, jnp.float32)
  recon = jnp.asarray(recon, jnp.float32)
  if x.shape != recon.shape:
    raise ValueError(f'x and recon must have the same shape; got {x.shape} '
                     f'and {recon.shape}.')
  err = jnp.square(recon - x).mean(-1)  # (B, 64, 64)
  ball_in = object_maps(x)[..., 0]
  ball_out = object_maps(recon)[..., 0]
  region = ball_in >= threshold
  n = region.sum((-1, -2))
  mean_on = lambda r: (jnp.where(r, err, 0.0).sum((-1, -2))
                       / jnp.maximum(r.sum((-1, -2)), 1))
  has = n > 0
  kept = (jnp.where(region, ball_out, 0.0).sum((-1, -2))
          / jnp.maximum(jnp.where(region, ball_in, 0.0).sum((-1, -2)), 1e-6))
  return {'mse': err.mean((-1, -2)),
          'mse_ball': jnp.where(has, mean_on(region), jnp.nan),
          'mse_rest': mean_on(~region),
          'ball_kept': jnp.where(has, kept, jnp.nan)}


# ----------------------------------------------------------------------------
# Fig. 6: crafted frames with a duplicate of the player's paddle.


def duplicate_placements(screen, num: int, *, seed: int = 0
                         ) -> dict[str, np.ndarray]:
  """Top-left screen corners for a duplicate of the player's paddle.

  Two sets of ``num`` placements inside the play field, none overlapping the
  player's paddle on ``screen``:

  * ``'column'``: in the player's paddle's columns, at rows away from it;
  * ``'elsewhere'``: at random columns whose 64x64 pixels share nothing with
    either paddle's column region (`column_region`), random rows.

  Args:
    screen: a ``(210, 160, 3)`` screen (the base frame).
    num: placements per set.
    seed: seeds the random rows and columns.

  Returns:
    ``{'column': (num, 2) int, 'elsewhere': (num, 2) int}`` (row, column).
  """
  rng = np.random.default_rng(seed)
  h, w = PADDLE_SHAPE
  rows = np.arange(FIELD_ROWS[0], FIELD_ROWS[1] - h + 1)
  own = paddle_rows(screen)
  if own is not None:
    rows = rows[(rows + h <= own[0]) | (rows >= own[1])]
  if rows.size == 0:
    raise ValueError('No free rows in the paddle\'s column on this screen.')
  cols_ok = [c for c in range(0, SCREEN[1] - w + 1)
             if not (_region(FIELD_ROWS, (c, c + w))
                     & (column_region(PLAYER_COLS)
                        | column_region(OPPONENT_COLS))).any()]
  column = np.stack([rng.choice(rows, num),
                     np.full(num, PLAYER_COLS[0])], -1)
  all_rows = np.arange(FIELD_ROWS[0], FIELD_ROWS[1] - h + 1)
  elsewhere = np.stack([rng.choice(all_rows, num), rng.choice(cols_ok, num)],
                       -1)
  return {'column': column.astype(np.int32),
          'elsewhere': elsewhere.astype(np.int32)}


def craft_duplicates(screen, corners) -> dict[str, np.ndarray]:
  """Frames of ``screen`` with a duplicate player's paddle at each corner.

  The duplicate (the player's colour, `PADDLE_SHAPE`) is drawn on the
  210x160 screen, clipped to the play field, which is then area-resized like
  every frame.

  Args:
    screen: ``(210, 160, 3)`` uint8 screen.
    corners: ``(P, 2)`` top-left (row, column) screen corners.

  Returns:
    ``{'image': (P, 64, 64, 3) uint8, 'footprint': (P, 64, 64) float, the
    share of each pixel the duplicate covers}``.
  """
  screen = np.asarray(screen)
  if screen.shape != SCREEN + (3,):
    raise ValueError(f'screen must have shape {SCREEN + (3,)}; got '
                     f'{screen.shape}.')
  corners = np.asarray(corners, np.int64).reshape(-1, 2)
  h, w = PADDLE_SHAPE
  screens = np.repeat(screen[None], len(corners), 0)
  masks = np.zeros((len(corners),) + SCREEN + (1,), np.float64)
  for i, (r, c) in enumerate(corners):
    r0, r1 = max(r, FIELD_ROWS[0]), min(r + h, FIELD_ROWS[1])
    c0, c1 = max(c, 0), min(c + w, SCREEN[1])
    if r0 >= r1 or c0 >= c1:
      raise ValueError(f'corner {i} = ({r}, {c}) puts the duplicate paddle '
                       'outside the play field.')
    screens[i, r0:r1, c0:c1] = PLAYER
    masks[i, r0:r1, c0:c1] = 1.0
  return {'image': resize_frames(screens),
          'footprint': area_resize(masks)[..., 0]}


def duplicate_errors(x, recon, footprint, *, threshold: float = 0.25
                     ) -> dict[str, jax.Array]:
  """How well reconstructions keep a duplicate paddle (Fig. 6).

  Args:
    x: crafted frames ``(B, 64, 64, 3)`` in [0, 1].
    recon: F's reconstructions, same shape.
    footprint: ``(B, 64, 64)`` share of each pixel the duplicate covers.
    threshold: footprint share that counts a pixel as the duplicate's.

  Returns:
    Per example ``(B,)``: ``'mse'``, the squared error on the duplicate's
    pixels; ``'kept'``, the player's colour share the reconstruction has on
    them over the input's (1: reconstructed, 0: gone); ``'as_ball'``, the
    ball's (white) share the reconstruction has there over the input's
    paddle share (> 0: drawn as the ball).
  """
  x = jnp.asarray(x, jnp.float32)
  recon = jnp.asarray(recon, jnp.float32)
  region = jnp.asarray(footprint) >= threshold
  if region.shape != x.shape[:-1]:
    raise ValueError(f'footprint must be {x.shape[:-1]}; got '
                     f'{region.shape}.')
  err = jnp.square(recon - x).mean(-1)
  n = jnp.maximum(region.sum((-1, -2)), 1)
  shares_in = object_maps(x)
  shares_out = object_maps(recon)
  total = lambda m: jnp.where(region, m, 0.0).sum((-1, -2))
  paddle = jnp.maximum(total(shares_in[..., 1]), 1e-6)
  return {'mse': total(err) / n,
          'kept': total(shares_out[..., 1]) / paddle,
          'as_ball': total(shares_out[..., 0]) / paddle}
