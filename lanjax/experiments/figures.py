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


def word_tables(rows, path, *, title='', max_doc_words=None, fontsize=9,
                widths=(2.4, 7.2, 3.2)):
  """Tables 1-2 of Grimm et al.: documents, their words and their top words.

  Each row shows the document's topic (with F's prediction), its words, and
  its most important words in rank order; words both in the document and
  among the top words are on yellow, in both columns.

  Args:
    rows: dicts with ``group``, ``id``, ``predicted``, ``probability``,
      ``doc_words`` and ``top_words`` (lists of str).
    path: the PNG to write.
    title: figure title.
    max_doc_words: show at most this many document words (then "+N more").
    fontsize: point size of the (monospace) text.
    widths: the three column widths in inches.
  """
  import textwrap  # pylint: disable=g-import-not-at-top
  cw = 0.6 * fontsize / 72  # inches per character of DejaVu Sans Mono
  lh = 1.5 * fontsize / 72  # line height, inches
  pad, gap = 0.1, 0.15

  def flow(words, width, highlight):
    cells, line, col = [], 0, 0
    max_chars = max(int(width / cw), 1)
    for i, w in enumerate(words):
      sep = ',' if i < len(words) - 1 else ''
      if col and col + len(w) + len(sep) > max_chars:
        line, col = line + 1, 0
      cells.append((line, col, w, sep, w in highlight))
      col += len(w) + len(sep) + 1
    return cells, (line + 1 if words else 1)

  laid_out = []
  for row in rows:
    top, doc = list(row['top_words']), list(row['doc_words'])
    both = set(top) & set(doc)
    shown = doc
    if max_doc_words is not None and len(doc) > max_doc_words:
      shown = doc[:max_doc_words] + [f'... (+{len(doc) - max_doc_words} more)']
    topic = textwrap.wrap(row['group'], int(widths[0] / cw)) + textwrap.wrap(
        f'F: {row["predicted"]} (p={row["probability"]:.2f})',
        int(widths[0] / cw)) + textwrap.wrap(
            f'[{row["id"]}]', int(widths[0] / cw))
    doc_cells, doc_lines = flow(shown, widths[1], both)
    top_cells, top_lines = flow(top, widths[2], both)
    height = max(len(topic), doc_lines, top_lines) * lh + 2 * pad
    laid_out.append((topic, doc_cells, top_cells, height))

  title_h = (title.count('\n') + 1) * lh * 1.3 + pad
  header_h = lh + 2 * pad
  fig_w = sum(widths) + 2 * gap + 2 * pad
  fig_h = title_h + header_h + sum(h for *_, h in laid_out) + pad
  fig = plt.figure(figsize=(fig_w, fig_h))
  tr = fig.dpi_scale_trans
  x0 = [pad, pad + widths[0] + gap, pad + widths[0] + widths[1] + 2 * gap]
  mono = dict(family='DejaVu Sans Mono', fontsize=fontsize, va='top',
              ha='left', transform=tr)

  fig.text(fig_w / 2, fig_h - pad, title, ha='center', va='top',
           fontsize=fontsize + 1, transform=tr)
  y = fig_h - title_h
  for x, text in zip(x0, ('Document topic', 'Document words (unordered)',
                          'Most important words')):
    fig.text(x, y - pad, text, weight='bold', **mono)
  y -= header_h

  def hline(y):
    fig.add_artist(plt.Line2D([pad, fig_w - pad], [y, y], transform=tr,
                              color='0.3', lw=0.6))
  hline(y)
  for topic, doc_cells, top_cells, height in laid_out:
    for i, t in enumerate(topic):
      fig.text(x0[0], y - pad - i * lh, t,
               weight='bold' if i == 0 else 'normal', **mono)
    for x, cells in ((x0[1], doc_cells), (x0[2], top_cells)):
      for line, col, word, sep, hl in cells:
        yy = y - pad - line * lh
        if hl:  # the word on yellow, under the same text drawn plain
          fig.text(x + col * cw, yy, word, color='none', zorder=1,
                   bbox=dict(facecolor='#ffe94d', edgecolor='none', pad=0.6),
                   **mono)
        fig.text(x + col * cw, yy, word + sep, zorder=2, **mono)
    y -= height
    hline(y)
  io.save_figure(fig, path, dpi=110)


def frame_pairs(frames, maps, path, *, title='', cols=None, columns=None,
                label='importance 1 - A(x)'):
  """Fig. 5 (Pong): each RGB frame (top) above its map (bottom).

  Args:
    frames: ``(N, H, W, 3)`` in [0, 1].
    maps: ``(N, H, W)`` or ``(N, H, W, 1)`` in [0, 1] (one colour scale).
    path: the PNG to write.
    title: figure title.
    cols: frames per row (default: all in one row).
    columns: optional ``(H, W)`` boolean region outlined on the maps (e.g.
      the paddles' columns).
    label: the colour bar's label.
  """
  frames, maps = np.asarray(frames), np.asarray(maps)
  if maps.ndim == 4:
    maps = maps[..., 0]
  n = len(frames)
  cols = cols or n
  rows = 2 * int(np.ceil(n / cols))
  fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.7 * rows),
                           squeeze=False)
  for ax in axes.ravel():
    ax.axis('off')
  im = None
  for i in range(n):
    r, c = 2 * (i // cols), i % cols
    axes[r, c].imshow(np.clip(frames[i], 0, 1))
    im = axes[r + 1, c].imshow(maps[i], cmap=CMAP, vmin=0, vmax=1)
    if columns is not None:
      axes[r + 1, c].contour(np.asarray(columns, float), levels=[0.5],
                             colors='white', linewidths=0.5,
                             linestyles='--')
  fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, label=label)
  fig.suptitle(title, fontsize=9)
  io.save_figure(fig, path, dpi=120, bbox_inches='tight')


def input_output_pairs(inputs, outputs, path, *, titles=None, title='',
                       footprints=None):
  """Fig. 6 (Pong): inputs (top row) and F's reconstructions (bottom row).

  Args:
    inputs: ``(N, H, W, 3)`` in [0, 1], e.g. crafted frames.
    outputs: ``(N, H, W, 3)`` in [0, 1], F's reconstructions.
    path: the PNG to write.
    titles: optional per-example titles (e.g. the placement and its error).
    title: figure title.
    footprints: optional ``(N, H, W)`` maps outlined (at 0.25) on both rows,
      e.g. where a duplicate paddle was placed.
  """
  inputs, outputs = np.asarray(inputs), np.asarray(outputs)
  n = len(inputs)
  fig, axes = plt.subplots(2, n, figsize=(1.9 * n, 4.1), squeeze=False)
  for i in range(n):
    for row, img in ((0, inputs[i]), (1, outputs[i])):
      ax = axes[row, i]
      ax.imshow(np.clip(img, 0, 1))
      ax.set_xticks([])
      ax.set_yticks([])
      if footprints is not None:
        ax.contour(np.asarray(footprints[i], float), levels=[0.25],
                   colors='cyan', linewidths=0.6)
    if titles is not None:
      axes[0, i].set_title(titles[i], fontsize=7)
  axes[0, 0].set_ylabel('input', fontsize=8)
  axes[1, 0].set_ylabel('reconstruction', fontsize=8)
  if title:
    fig.suptitle(title, fontsize=9)
  io.save_figure(fig, path, dpi=120, bbox_inches='tight')
