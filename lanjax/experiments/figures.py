"""Matplotlib figures shared by the experiments (written atomically)."""

from __future__ import annotations

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
from matplotlib import patches  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from lanjax import io  # pylint: disable=g-import-not-at-top

CMAP = 'jet'  # warm = important, as in the paper's figures


def _pair_grid(n, cols):
  """Axes (off) for ``n`` input/map pairs, ``cols`` per row: the input in
  row ``2 * (i // cols)``, its map in the row below."""
  rows = 2 * int(np.ceil(n / cols))
  fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.7 * rows),
                           squeeze=False)
  for ax in axes.ravel():
    ax.axis('off')
  return fig, axes


def attention_pairs(images, importance, corners, box_size, path, *, title='',
                    cols=None):
  """Fig. 2: each input (top) above its attention map (bottom).

  One colour scale, [0, 1], for all maps; the digit's box is outlined.
  """
  n = len(images)
  cols = cols or n
  fig, axes = _pair_grid(n, cols)
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


def class_columns(images, importance, class_names, path, *, title='',
                  row_labels=None):
  """Fig. 4: frames of an input (left) and its importance map (right).

  One column of frames per class, one example per row; every map on the
  same ``[0, 1]`` scale in `CMAP` (warm = important), as in the
  translated-MNIST figures.

  Args:
    images: ``(R, C, H, W, 3)`` RGB inputs in ``[0, 1]`` (or ``(R, C, H, W)``
      / ``(..., 1)`` grey).
    importance: ``(R, C, H, W)`` or ``(R, C, H, W, 1)`` maps ``1 - A(x)`` in
      ``[0, 1]``.
    class_names: ``C`` column titles.
    path: the PNG to write.
    title: figure title.
    row_labels: optional ``(R, C)`` strings under each frame (e.g. F's
      prediction).
  """
  images = np.asarray(images, np.float32)
  importance = np.asarray(importance, np.float32)
  if importance.ndim == 5:
    importance = importance[..., 0]
  if images.ndim == 5 and images.shape[-1] == 1:
    images = images[..., 0]
  rows, cols = importance.shape[:2]
  if images.shape[:2] != (rows, cols) or len(class_names) != cols:
    raise ValueError(
        f'class_columns needs images {images.shape[:2]} and importance '
        f'{importance.shape[:2]} laid out as the same (rows, columns) grid '
        f'and one class name per column ({len(class_names)} given).')
  fig = plt.figure(figsize=(2.1 * cols + 0.8, 1.1 * rows + 0.6))
  grid = fig.add_gridspec(rows, cols, wspace=0.12, hspace=0.25 if
                          row_labels is not None else 0.08)
  im = None
  for r in range(rows):
    for c in range(cols):
      sub = grid[r, c].subgridspec(1, 2, wspace=0.03)
      ax_img, ax_map = fig.add_subplot(sub[0]), fig.add_subplot(sub[1])
      img = np.clip(images[r, c], 0, 1)
      ax_img.imshow(img, cmap='gray' if img.ndim == 2 else None, vmin=0,
                    vmax=1, interpolation='nearest')
      im = ax_map.imshow(importance[r, c], cmap=CMAP, vmin=0, vmax=1,
                         interpolation='nearest')
      for ax in (ax_img, ax_map):
        ax.set_xticks([])
        ax.set_yticks([])
      if r == 0:
        ax_img.set_title(class_names[c], fontsize=9, loc='left')
      if row_labels is not None:
        ax_img.set_xlabel(str(row_labels[r][c]), fontsize=6)
  fig.colorbar(im, ax=fig.axes, shrink=0.6, label='importance 1 - A(x)')
  if title:
    fig.suptitle(title, fontsize=9)
  io.save_figure(fig, path, dpi=120, bbox_inches='tight')


def perturbation_curves(table, path, *, title=''):
  """Deletion and insertion curves of every method (`evaluation.compare`).

  One panel per curve kind (``deletion/<removal>``, ``insertion/<removal>``),
  one line per method: F's mean score against the fraction of components
  removed or inserted, the area under each curve in the legend.
  """
  curves = table['curves']
  kinds = list(next(iter(curves.values())))
  fig, axes = plt.subplots(1, len(kinds), figsize=(3.4 * len(kinds), 3.0),
                           squeeze=False)
  for ax, kind in zip(axes[0], kinds):
    mode, removal = kind.split('/', 1)
    for name, by_kind in curves.items():
      c = np.asarray(by_kind[kind])
      auc = table['methods'][name][f'{mode}_auc/{removal}']['mean']
      ax.plot(np.linspace(0, 1, len(c)), c, label=f'{name} ({auc:.3f})')
    ax.set_xlabel(f'fraction {"removed" if mode == "deletion" else "inserted"}')
    ax.set_ylabel('score')
    ax.set_title(f'{mode}, {removal}', fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
  if title:
    fig.suptitle(title, fontsize=9)
  io.save_figure(fig, path, dpi=110, bbox_inches='tight')


def sdc_mosaics(mosaics, maps, fg, grid, path, *, title='', fg_labels=None):
  """SDC mosaics (left column) and each method's map, foreground boxed.

  Rows are examples; columns the input, then one map per method, each map
  scaled to its own [min, max] per example (the methods' scales differ).

  Args:
    mosaics: ``(N, H, W, C)`` images in [0, 1] (C = 1 grey, 3 colour).
    maps: ``{method name: (N, H, W) or (N, H, W, 1) map}``, higher = more
      important; an insertion-ordered dict gives the column order.
    fg: ``(N,)`` foreground segment indices.
    grid: ``g``, segments per row.
    path: the PNG to write.
    title: figure title.
    fg_labels: optional ``(N,)`` labels shown above the inputs.
  """
  mosaics = np.asarray(mosaics)
  n, h, w = mosaics.shape[:3]
  cols = 1 + len(maps)
  fig, axes = plt.subplots(n, cols, figsize=(1.7 * cols, 1.75 * n),
                           squeeze=False)
  s, t = h // grid, w // grid
  for i in range(n):
    r, c = divmod(int(fg[i]), grid)
    img = mosaics[i]
    axes[i, 0].imshow(img[..., 0] if img.shape[-1] == 1 else img,
                      cmap='gray', vmin=0, vmax=1)
    if i == 0:
      axes[i, 0].set_title('input', fontsize=8)
    if fg_labels is not None:
      axes[i, 0].set_ylabel(f'y={int(fg_labels[i])}', fontsize=7)
    for j, (name, m) in enumerate(maps.items()):
      v = np.asarray(m[i], np.float32)
      v = v[..., 0] if v.ndim == 3 else v
      lo, hi = float(v.min()), float(v.max())
      axes[i, j + 1].imshow((v - lo) / (hi - lo) if hi > lo else v * 0,
                            cmap=CMAP, vmin=0, vmax=1)
      if i == 0:
        axes[i, j + 1].set_title(name, fontsize=8)
    for ax in axes[i]:
      ax.set_xticks([])
      ax.set_yticks([])
      for g in range(1, grid):  # segment borders
        ax.axhline(g * s - 0.5, color='0.6', lw=0.4)
        ax.axvline(g * t - 0.5, color='0.6', lw=0.4)
      ax.add_patch(patches.Rectangle((c * t - 0.5, r * s - 0.5), t, s,
                                     fill=False, edgecolor='white', lw=1.4,
                                     ls='--'))
  if title:
    fig.suptitle(title, fontsize=9)
  io.save_figure(fig, path, dpi=110, bbox_inches='tight')


def sdc_focus_landscape(points, labels, xs, ys, values, path, *, title='',
                        label='focus score f(x)'):
  """Fig. 2a of Pandey et al.: a focus net over the plane, samples on top.

  Args:
    points: ``(P, 2)`` samples of the base distributions.
    labels: ``(P,)`` their distribution (0 background, 1..k foreground).
    xs, ys: ``(X,)``, ``(Y,)`` grid coordinates.
    values: ``(Y, X)`` the focus score at each grid point.
    path: the PNG to write.
    title: figure title.
    label: colour bar label.
  """
  fig, ax = plt.subplots(figsize=(4.6, 3.8))
  im = ax.pcolormesh(xs, ys, values, cmap='Greys', shading='auto')
  points, labels = np.asarray(points), np.asarray(labels)
  for c in np.unique(labels):
    sel = labels == c
    ax.scatter(points[sel, 0], points[sel, 1], s=4, alpha=0.6,
               label='background $D_0$' if c == 0 else f'class {int(c)}')
  ax.legend(fontsize=7, markerscale=2)
  fig.colorbar(im, ax=ax, label=label)
  ax.set_title(title, fontsize=9)
  io.save_figure(fig, path, dpi=120, bbox_inches='tight')


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
  fig, axes = _pair_grid(n, cols)
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
