"""Matplotlib figures shared by the experiments (written atomically)."""

from __future__ import annotations

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
from matplotlib import patches  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from lanjax import io  # pylint: disable=g-import-not-at-top

CMAP = 'jet'  # warm = important, as in the paper's figures


def attention_pairs(images, importance, corners, box_size, path, *, title='',
                    cols=None):
  """Fig. 2: each input (top) above its attention map (bottom).

  One colour scale, [0, 1], for all maps; the digit's box is outlined.
  """
  n = len(images)
  cols = cols or n
  rows = 2 * int(np.ceil(n / cols))
  fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.7 * rows),
                           squeeze=False)
  for ax in axes.ravel():
    ax.axis('off')
  im = None
  for i in range(n):
    r, c = 2 * (i // cols), i % cols
    axes[r, c].imshow(images[i][..., 0], cmap='gray', vmin=0, vmax=1)
    im = axes[r + 1, c].imshow(importance[i][..., 0], cmap=CMAP, vmin=0,
                               vmax=1)
    if corners is not None:
      for ax in (axes[r, c], axes[r + 1, c]):
        ax.add_patch(patches.Rectangle(
            (corners[i][1] - 0.5, corners[i][0] - 0.5), box_size, box_size,
            fill=False, edgecolor='white', lw=0.8, ls='--'))
  fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6,
               label='importance 1 - A(x)')
  fig.suptitle(title, fontsize=9)
  io.save_figure(fig, path, dpi=120, bbox_inches='tight')


def heatmap(values, path, *, title='', box=None, vmin=None, vmax=None,
            label=''):
  """A single map (Fig. 3a-d); NaN cells drawn dark blue; optional box."""
  fig, ax = plt.subplots(figsize=(4.2, 3.6))
  cmap = plt.get_cmap(CMAP).with_extremes(bad='#00007f')
  im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin,
                 vmax=vmax)
  if box is not None:
    r, c, s = box
    ax.add_patch(patches.Rectangle((c - 0.5, r - 0.5), s, s, fill=False,
                                   edgecolor='white', lw=1.2, ls='--'))
  ax.set_xticks([])
  ax.set_yticks([])
  fig.colorbar(im, ax=ax, label=label)
  ax.set_title(title, fontsize=8)
  io.save_figure(fig, path, dpi=120, bbox_inches='tight')


def panels(maps, path, *, titles, boxes=None, vmins=None, vmaxs=None,
           suptitle=''):
  """A row of maps (e.g. Fig. 3a-d); NaN cells dark blue, optional boxes."""
  n = len(maps)
  fig, axes = plt.subplots(1, n, figsize=(3.0 * n, 3.2), squeeze=False)
  cmap = plt.get_cmap(CMAP).with_extremes(bad='#00007f')
  for i, ax in enumerate(axes[0]):
    im = ax.imshow(np.ma.masked_invalid(maps[i]), cmap=cmap,
                   vmin=None if vmins is None else vmins[i],
                   vmax=None if vmaxs is None else vmaxs[i])
    if boxes is not None and boxes[i] is not None:
      r, c, s = boxes[i]
      ax.add_patch(patches.Rectangle((c - 0.5, r - 0.5), s, s, fill=False,
                                     edgecolor='white', lw=1.2, ls='--'))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(titles[i], fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
  if suptitle:
    fig.suptitle(suptitle, fontsize=9)
  io.save_figure(fig, path, dpi=110, bbox_inches='tight')


def curve(points, path, *, title='', xlabel='', ylabel='', labels=None):
  """One or more curves: ``points`` is ``(N, 2)`` or a list of them."""
  fig, ax = plt.subplots(figsize=(4.5, 3.2))
  series = points if isinstance(points, (list, tuple)) else [points]
  for i, p in enumerate(series):
    p = np.asarray(p)
    ax.plot(p[:, 0], p[:, 1], marker='.',
            label=None if labels is None else labels[i])
  if labels is not None:
    ax.legend(fontsize=8)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title, fontsize=9)
  ax.grid(alpha=0.3)
  io.save_figure(fig, path, dpi=120, bbox_inches='tight')
