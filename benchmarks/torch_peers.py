"""Each experiment's LAN step written in plain PyTorch (eager): the peer rows
of `benchmarks/run.py`.

The same step as `lanjax.training.lan_update` builds for the experiment:
draw the batch and K bootstrapped noise samples per example from the same
pools, A(x) (leaky-ReLU MLP, sigmoid), corrupt ``x~ = A(x) eta + (1 - A(x))
x`` (eq. 2), evaluate F, frozen, on the B * K corrupted copies as one batch,
L_F against F(x) (softmax cross-entropy of the logits, or the squared error
for the Pong autoencoder), minus beta times the mean mask, backward into A
only, one Adam step. The networks are the experiment's, layer for layer,
with the JAX parameters copied in (`build` takes `run.LanSetup`), so that
`tests/test_benchmarks.py` can check that the torch F and A compute the JAX
F and A. Images are NCHW, torch's native layout on CPU; everything a step
needs is made once (pools converted to torch tensors) and each `step()` does
what the JAX step does inside its jitted call.

Requires ``torch`` (``pip install -r benchmarks/requirements.txt``); lanjax
itself never imports it.
"""

from __future__ import annotations

import math
import os
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as tf


def num_threads() -> int:
  """The cores XLA:CPU uses (its thread pool spans the process's CPUs)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # pragma: no cover
    return os.cpu_count() or 1


def _t(a, dtype=torch.float32):
  return torch.from_numpy(np.array(a)).to(dtype)


def _params(tree) -> dict:
  """NNX state -> nested dict of numpy arrays keyed by str."""
  import jax  # pylint: disable=g-import-not-at-top
  flat = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    keys = [str(getattr(p, 'key', getattr(p, 'idx', getattr(p, 'name', p))))
            for p in path]
    keys = [k for k in keys if k not in ('value', 'raw_value')]
    flat['/'.join(keys)] = np.asarray(leaf)
  return flat


# ----------------------------------------------------------------------------
# Layers with the JAX parameters.


def _same_pads(size: int, k: int, s: int) -> tuple[int, int]:
  out = -(-size // s)
  total = max((out - 1) * s + k - size, 0)
  return total // 2, total - total // 2


class Conv(torch.nn.Module):
  """A 'SAME' convolution from an HWIO kernel (XLA's padding, lo <= hi)."""

  def __init__(self, kernel, bias, stride: int, size: int):
    super().__init__()
    self.weight = torch.nn.Parameter(_t(kernel).permute(3, 2, 0, 1).contiguous(),
                                     requires_grad=False)
    self.bias = torch.nn.Parameter(_t(bias), requires_grad=False)
    self.stride = stride
    lo, hi = _same_pads(size, kernel.shape[0], stride)
    self.pad = lo if lo == hi else None
    self.pads = (lo, hi, lo, hi)

  def forward(self, x):
    if self.pad is None:
      return tf.conv2d(tf.pad(x, self.pads), self.weight, self.bias,
                       self.stride)
    return tf.conv2d(x, self.weight, self.bias, self.stride, self.pad)


class ConvTranspose(torch.nn.Module):
  """flax's ``ConvTranspose(strides=2, padding='SAME')`` (kernel not flipped)."""

  def __init__(self, kernel, bias, stride: int):
    super().__init__()
    k = kernel.shape[0]
    # lax.conv_transpose correlates the stride-dilated input padded by
    # (a, b), a = ceil((k + s - 2) / 2), with the kernel as it is; torch's
    # transposed convolution pads by k - 1 - p and flips the kernel.
    a = math.ceil((k + stride - 2) / 2) if stride <= k - 1 else k - 1
    self.padding = k - 1 - a
    w = _t(kernel).flip(0, 1).permute(2, 3, 0, 1).contiguous()  # (I, O, H, W)
    self.weight = torch.nn.Parameter(w, requires_grad=False)
    self.bias = torch.nn.Parameter(_t(bias), requires_grad=False)
    self.stride = stride

  def forward(self, x):
    n = x.shape[-1] * self.stride
    y = tf.conv_transpose2d(x, self.weight, self.bias, self.stride,
                            self.padding)
    return y[..., :n, :n]


def _dense(p, prefix, rows_from_hwc=None, trainable=False):
  """``nn.Linear`` from flax's (in, out) kernel; ``rows_from_hwc=(h, w, c)``
  reorders the input rows from an NHWC flatten to an NCHW one."""
  k = p[f'{prefix}/kernel']
  if rows_from_hwc is not None:
    h, w, c = rows_from_hwc
    k = k.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1)
  lin = torch.nn.Linear(k.shape[0], k.shape[1])
  with torch.no_grad():
    lin.weight.copy_(_t(k.T))
    lin.bias.copy_(_t(p[f'{prefix}/bias']))
  lin.requires_grad_(trainable)
  return lin


def _stride2_convs(p, prefix, size, channels):
  """The stride-2 convs ``{prefix}convs/{i}`` of ``p`` on ``size``-wide
  inputs: ``(ModuleList, output size, output channels)``."""
  convs, i = [], 0
  while f'{prefix}convs/{i}/kernel' in p:
    k = p[f'{prefix}convs/{i}/kernel']
    convs.append(Conv(k, p[f'{prefix}convs/{i}/bias'], 2, size))
    size, channels = -(-size // 2), k.shape[-1]
    i += 1
  return torch.nn.ModuleList(convs), size, channels


def _nchw(shape):
  return (shape[-1], *shape[:-1]) if len(shape) == 3 else tuple(shape)


class MaskNet(torch.nn.Module):
  """`lanjax.models.LatentAttentionNetwork`: FC layers, leaky ReLU, sigmoid.

  Reads NCHW images (its first layer's rows reordered from the JAX NHWC
  flatten) and returns the mask NCHW.
  """

  def __init__(self, p, input_shape, mask_shape):
    super().__init__()
    n = len({k.split('/')[1] for k in p if k.startswith('layers/')})
    hwc = tuple(input_shape) if len(input_shape) == 3 else None
    layers = [_dense(p, 'layers/0', rows_from_hwc=hwc, trainable=True)]
    layers += [_dense(p, f'layers/{i}', trainable=True) for i in range(1, n)]
    last = layers[-1]
    if len(mask_shape) == 3:  # output units from HWC to CHW order
      h, w, c = mask_shape
      order = torch.arange(h * w * c).reshape(h, w, c).permute(2, 0, 1)
      with torch.no_grad():
        last.weight.copy_(last.weight[order.reshape(-1)])
        last.bias.copy_(last.bias[order.reshape(-1)])
    self.layers = torch.nn.ModuleList(layers)
    self.mask_shape = _nchw(mask_shape)

  def forward(self, x):
    h = x.reshape(x.shape[0], -1)
    for layer in self.layers[:-1]:
      h = tf.leaky_relu(layer(h), 0.01)
    return torch.sigmoid(self.layers[-1](h)).reshape(
        (x.shape[0],) + self.mask_shape)


class ConvMaskNet(torch.nn.Module):
  """`lanjax.models.ConvLatentAttentionNetwork`: stride-2 convs (leaky
  ReLU), a 1x1 conv head, its logits resized (bilinear, half-pixel centres:
  `jax.image.resize`'s 'linear' when enlarging) to the mask, sigmoid."""

  def __init__(self, p, input_shape, mask_shape):
    super().__init__()
    self.convs, size, _ = _stride2_convs(p, '', input_shape[0],
                                         input_shape[-1])
    self.head = Conv(p['head/kernel'], p['head/bias'], 1, size)
    self.requires_grad_(True)
    self.mask_hw = tuple(mask_shape[:2])

  def forward(self, x):
    for conv in self.convs:
      x = tf.leaky_relu(conv(x), 0.01)
    logits = tf.interpolate(self.head(x), size=self.mask_hw, mode='bilinear',
                            align_corners=False)
    return torch.sigmoid(logits)


# ----------------------------------------------------------------------------
# The black boxes F.


class MnistF(torch.nn.Module):
  """`lanjax.models.ConvClassifier`: Conv(10, 2, 4x4), Conv(20, 2, 4x4), FC."""

  def __init__(self, p, input_shape):
    super().__init__()
    self.convs, size, c = _stride2_convs(p, '', input_shape[0],
                                         input_shape[-1])
    self.head = _dense(p, 'head', rows_from_hwc=(size, size, c))

  def forward(self, x):
    for conv in self.convs:
      x = tf.leaky_relu(conv(x), 0.01)
    return self.head(x.flatten(1))


class CifarF(torch.nn.Module):
  """`lanjax.models.cifar.CifarConvNet` in inference mode (no dropout): five
  convolutions with leaky ReLU and local response normalisation, FC(384,
  tanh), FC(192, tanh), FC(10)."""

  def __init__(self, p, strides=(2, 2, 1, 1, 2), size=32):
    super().__init__()
    convs = []
    for i, s in enumerate(strides):
      k = p[f'convs/{i}/kernel']
      convs.append(Conv(k, p[f'convs/{i}/bias'], s, size))
      size, c = -(-size // s), k.shape[-1]
    self.convs = torch.nn.ModuleList(convs)
    n = len({k.split('/')[1] for k in p if k.startswith('dense/')})
    self.dense = torch.nn.ModuleList(
        [_dense(p, 'dense/0', rows_from_hwc=(size, size, c))]
        + [_dense(p, f'dense/{i}') for i in range(1, n)])
    self.head = _dense(p, 'head')

  def forward(self, x):
    for conv in self.convs:
      x = tf.leaky_relu(conv(x), 0.01)
      # TF's LRN (radius 4, bias 1, alpha 0.001 / 9, beta 0.75); torch
      # divides alpha by the window size.
      x = tf.local_response_norm(x, 9, alpha=0.001, beta=0.75, k=1.0)
    x = x.flatten(1)
    for layer in self.dense:
      x = torch.tanh(layer(x))
    return self.head(x)


class PongF(torch.nn.Module):
  """`lanjax.models.ConvAutoencoder`: three stride-2 5x5 convolutions, three
  stride-2 5x5 transposed convolutions, a sigmoid."""

  def __init__(self, p, size=64):
    super().__init__()
    enc, dec = [], []
    i = 0
    while f'encoder/{i}/kernel' in p:
      enc.append(Conv(p[f'encoder/{i}/kernel'], p[f'encoder/{i}/bias'], 2,
                      size))
      size = -(-size // 2)
      i += 1
    i = 0
    while f'decoder/{i}/kernel' in p:
      dec.append(ConvTranspose(p[f'decoder/{i}/kernel'],
                               p[f'decoder/{i}/bias'], 2))
      i += 1
    self.layers = torch.nn.ModuleList(enc + dec)

  def forward(self, x):
    for layer in self.layers[:-1]:
      x = tf.leaky_relu(layer(x), 0.01)
    return torch.sigmoid(self.layers[-1](x))


class DanF(torch.nn.Module):
  """`lanjax.models.DeepAveragingNetwork` on dense counts, in inference
  mode: ``x E / sum(x)``, FC(ReLU) layers, logits."""

  def __init__(self, p):
    super().__init__()
    self.embedding = torch.nn.Parameter(_t(p['embedding']),
                                        requires_grad=False)
    n = len({k.split('/')[1] for k in p if k.startswith('hidden/')})
    self.hidden = torch.nn.ModuleList(
        [_dense(p, f'hidden/{i}') for i in range(n)])
    self.head = _dense(p, 'head')

  def forward(self, x):
    total = x.sum(-1, keepdim=True)
    h = (x @ self.embedding) / torch.where(total > 0, total, 1.0)
    for layer in self.hidden:
      h = torch.relu(layer(h))
    return self.head(h)


class SegmentNet(torch.nn.Module):
  """`lanjax.models.fcam.SegmentNet` on image segments: stride-2 4x4
  convolutions (ReLU), FC(ReLU) layers, a head; returns the head's output."""

  def __init__(self, p, prefix, size):
    super().__init__()
    self.convs, size, c = _stride2_convs(p, f'{prefix}/', size, None)
    n = len({k.split('/')[2] for k in p if k.startswith(f'{prefix}/hidden/')})
    self.hidden = torch.nn.ModuleList(
        [_dense(p, f'{prefix}/hidden/0', rows_from_hwc=(size, size, c))]
        + [_dense(p, f'{prefix}/hidden/{i}') for i in range(1, n)])
    self.head = _dense(p, f'{prefix}/head')

  def forward(self, x):
    for conv in self.convs:
      x = torch.relu(conv(x))
    h = x.flatten(1)
    for layer in self.hidden:
      h = torch.relu(layer(h))
    return self.head(h)


class FcamF(torch.nn.Module):
  """`lanjax.models.FCAM` on mosaics (softmax attention at the input): the
  focus net scores each of the g x g segments, the classifier reads their
  alpha-weighted sum."""

  def __init__(self, p, grid: int, segment: int):
    super().__init__()
    self.grid, self.segment = grid, segment
    self.focus = SegmentNet(p, 'focus', segment)
    self.classifier = SegmentNet(p, 'classifier', segment)

  def forward(self, x):
    b, c = x.shape[:2]
    g, s = self.grid, self.segment
    segs = x.reshape(b, c, g, s, g, s).permute(0, 2, 4, 1, 3, 5)
    segs = segs.reshape(b, g * g, c, s, s)
    scores = self.focus(segs.reshape(b * g * g, c, s, s)).reshape(b, g * g)
    alpha = torch.softmax(scores, -1)
    attended = torch.einsum('bm,bmchw->bchw', alpha, segs)
    return self.classifier(attended)


# ----------------------------------------------------------------------------
# Batches and noise, drawn as the JAX step draws them.


def _placer(pool, allowed, canvas: int):
  """Digits ``(N, s, s)`` placed at random allowed corners on a canvas."""
  choices = torch.from_numpy(np.flatnonzero(np.asarray(allowed)))
  width = np.asarray(allowed).shape[1]
  s = pool.shape[-1]
  ar = torch.arange(s)

  def draw(n):
    digits = pool[torch.randint(0, pool.shape[0], (n,))]
    corner = choices[torch.randint(0, choices.numel(), (n,))]
    r, c = corner // width, corner % width
    out = torch.zeros(n, canvas, canvas)
    rows = (r[:, None] + ar)[:, :, None]
    cols = (c[:, None] + ar)[:, None, :]
    out[torch.arange(n)[:, None, None], rows, cols] = digits
    return out[:, None]  # (n, 1, canvas, canvas)
  return draw


def _uint8_images(pool):
  """uint8 NHWC images, drawn as float NCHW in [0, 1]."""
  pool = torch.from_numpy(np.asarray(pool)).permute(0, 3, 1, 2).contiguous()

  def draw(n):
    return pool[torch.randint(0, pool.shape[0], (n,))].float() / 255.0
  return draw


def _mosaics(images, idx, grid: int):
  """Random training mosaics of base images ``(P, s, s, c)``, NCHW."""
  images = torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2)
  images = images.contiguous()
  idx = torch.from_numpy(np.asarray(idx)).long()

  def draw(n):
    segs = images[idx[torch.randint(0, idx.shape[0], (n,))]]  # (n, m, c, s, s)
    if segs.dtype == torch.uint8:
      segs = segs.float() / 255.0
    _, _, c, s, _ = segs.shape
    segs = segs.reshape(n, grid, grid, c, s, s).permute(0, 3, 1, 4, 2, 5)
    return segs.reshape(n, c, grid * s, grid * s)
  return draw


def _documents(bow):
  """Dense count vectors of random training documents (the sparse windows
  scattered into zeros)."""
  ids = torch.from_numpy(np.asarray(bow.ids)).long()
  counts = torch.from_numpy(np.asarray(bow.counts))
  offsets = torch.from_numpy(np.asarray(bow.offsets)).long()
  lengths = torch.from_numpy(np.asarray(bow.lengths)).long()
  window = torch.arange(int(bow.max_length))
  v = int(bow.vocab_size)

  def draw(n):
    i = torch.randint(0, offsets.shape[0], (n,))
    pos = offsets[i][:, None] + window
    valid = window < lengths[i][:, None]
    out = torch.zeros(n, v)
    out.scatter_add_(1, ids[pos], torch.where(valid, counts[pos], 0.0))
    return out
  return draw


# ----------------------------------------------------------------------------
# The step.


class Peer:
  """One experiment's LAN step in PyTorch.

  Attributes:
    f, a: the frozen F and the trained A (torch modules, NCHW images).
    step: ``step() -> loss``: one training step of A, the batch and noise
      drawn inside.
  """

  def __init__(self, f, a, draw_x: Callable, draw_noise: Callable, *,
               batch_size: int, num_samples: int, beta: float,
               learning_rate: float, loss: str):
    self.f, self.a = f.eval(), a
    self.draw_x, self.draw_noise = draw_x, draw_noise
    self.batch_size, self.num_samples = batch_size, num_samples
    self.beta, self.loss = beta, loss
    self.opt = torch.optim.Adam(a.parameters(), lr=learning_rate)

  def objective(self, x, eta):
    """``(loss, fidelity, mask mean)`` for x ``(B, ...)`` and noise
    ``(B, K, ...)`` (example-major, as `lanjax.lan_terms` orders F's batch)."""
    b, k = eta.shape[:2]
    with torch.no_grad():
      target = self.f(x)
    mask = self.a(x)
    m = mask[:, None]
    z = m * eta + (1 - m) * x[:, None]
    out = self.f(z.reshape((b * k,) + x.shape[1:]))
    out = out.reshape((b, k) + out.shape[1:])
    if self.loss == 'cross_entropy':
      per = -(torch.softmax(target, -1)[:, None]
              * torch.log_softmax(out, -1)).sum(-1)
    else:
      per = (out - target[:, None]).square().flatten(2).mean(-1)
    fidelity = per.mean(1)
    mask_mean = mask.flatten(1).mean(-1)
    return (fidelity - self.beta * mask_mean).mean(), fidelity, mask_mean

  def step(self):
    b, k = self.batch_size, self.num_samples
    x = self.draw_x(b)
    eta = self.draw_noise(b, k, x)
    loss, _, _ = self.objective(x, eta)
    self.opt.zero_grad(set_to_none=True)
    loss.backward()
    self.opt.step()
    return loss


def build(name: str, setup, *, batch_size: int, num_samples: int,
          variant=None) -> Peer:
  """The torch peer of experiment ``name``'s LAN step (`run.LanSetup`,
  built from ``configs/<name>.py:<variant>``)."""
  import importlib  # pylint: disable=g-import-not-at-top
  config = importlib.import_module(f'configs.{name}').get_config(variant)
  fp = _params(setup.lan_data['f_params'])
  ap = _params(setup.lan_state['params'])
  data, noise = setup.lan_data, setup.lan_data['noise']
  shape = tuple(setup.input_shape)
  mask_shape = tuple(config.lan.get('mask_shape', None) or shape)
  loss = 'cross_entropy'

  def pooled(draw):  # noise drawn from the same pool as the batch
    return lambda b, k, x: draw(b * k).reshape((b, k) + x.shape[1:])

  if name == 'translated_mnist':
    place = noise.transform
    draw_digits = _placer(_t(data['digits']), place.allowed, place.canvas)
    draw_noise = _placer(_t(noise.pool), place.allowed, place.canvas)
    f, draw_x = MnistF(fp, shape), draw_digits
    draw_eta = pooled(draw_noise)
  elif name == 'cifar10':
    f = CifarF(fp, strides=tuple(int(c[1]) for c in config.f.convs))
    draw_x = _uint8_images(data['image'])
    draw_eta = pooled(_uint8_images(noise.pool))
  elif name == 'pong':
    f, draw_x = PongF(fp), _uint8_images(data['frames'])
    draw_eta = pooled(_uint8_images(noise.pool))
    loss = 'squared_error'
  elif name == 'sdc':
    grid = int(round(math.sqrt(config.data.num_segments)))
    seg = int(config.data.segment_shape[0])
    f = FcamF(fp, grid, seg)
    draw_x = _mosaics(data['images'], data['idx'], grid)
    draw_eta = pooled(_mosaics(noise.images, noise.idx, grid))
  elif name == 'newsgroups':
    f, draw_x = DanF(fp), _documents(data['bow'])
    draw_docs = _documents(noise.bow)

    def draw_eta(b, k, x):
      docs = draw_docs(b * k).reshape(b, k, -1)
      total = docs.sum(-1, keepdim=True)
      return docs * (x.sum(-1)[:, None, None]
                     / torch.where(total > 0, total, 1.0))
  else:
    raise ValueError(f'No torch peer for {name!r}.')
  arch = config.lan.get('arch', 'mlp')
  if arch == 'conv':
    a = ConvMaskNet(ap, shape, mask_shape)
  elif arch == 'mlp':
    a = MaskNet(ap, shape, mask_shape)
  else:
    raise ValueError(f'No torch peer for the A architecture {arch!r}.')
  return Peer(f, a, draw_x, draw_eta, batch_size=batch_size,
              num_samples=num_samples, beta=float(config.lan.beta),
              learning_rate=float(config.lan.learning_rate), loss=loss)


PEERS = ('translated_mnist', 'newsgroups', 'cifar10', 'pong', 'sdc')
