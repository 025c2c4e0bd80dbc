"""Metric logs of a run: progress lines, JSON lines, TensorBoard scalars.

TensorBoard event files are written without TensorFlow (`EventFileWriter`, a
clu ``MetricWriter`` over the ``tensorboard`` package's protos and record
format): training and evaluation never import TensorFlow, which is only
needed to *prepare* TFDS datasets from raw files (the ``prepare`` extra).
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import socket
import struct
import sys
import time
from typing import Any, Iterator, Mapping, Optional

import jax
import numpy as np

from lanjax import io


def _metric_writer_base():
  """clu's ``MetricWriter`` base class, without importing TensorFlow.

  ``clu.metric_writers``' package ``__init__`` imports its TensorFlow summary
  writer; the interface module itself needs only NumPy and JAX, so it is
  loaded on its own (and registered, so that a later ``import
  clu.metric_writers`` finds the same class).
  """
  name = 'clu.metric_writers.interface'
  if name in sys.modules:
    return sys.modules[name].MetricWriter
  spec = importlib.util.find_spec('clu')
  path = os.path.join(os.path.dirname(spec.origin), 'metric_writers',
                      'interface.py')
  module_spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(module_spec)
  sys.modules[name] = module
  module_spec.loader.exec_module(module)
  return module.MetricWriter


_MetricWriter = _metric_writer_base()


class EventFileWriter(_MetricWriter):
  """A clu ``MetricWriter`` that writes TensorBoard event files, no TensorFlow.

  Scalars, texts, images, histograms and hparams are written as the Summary
  protos TensorBoard reads (``tensorboard.compat.proto``), in TFRecord
  framing, to ``logdir/events.out.tfevents.<time>.<host>.<pid>.v2``.
  Videos, audio and point clouds are not supported (`NotImplementedError`).

  Args:
    logdir: the directory of the event files (created).
  """

  def __init__(self, logdir: str):
    from tensorboard.compat.proto import event_pb2  # pylint: disable=g-import-not-at-top
    self._event_pb2 = event_pb2
    os.makedirs(logdir, exist_ok=True)
    self.path = os.path.join(
        logdir, f'events.out.tfevents.{time.time():.6f}.'
        f'{socket.gethostname()}.{os.getpid()}.v2')
    self._fh = open(self.path, 'ab')
    self._write_event(event_pb2.Event(wall_time=time.time(),
                                      file_version='brain.Event:2'))

  def _write_event(self, event):
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c  # pylint: disable=g-import-not-at-top
    data = event.SerializeToString()
    header = struct.pack('<Q', len(data))
    self._fh.write(header + struct.pack('<I', masked_crc32c(header)) + data
                   + struct.pack('<I', masked_crc32c(data)))

  def _write_values(self, step: int, values):
    from tensorboard.compat.proto import summary_pb2  # pylint: disable=g-import-not-at-top
    summary = summary_pb2.Summary(value=values)
    self._write_event(self._event_pb2.Event(
        wall_time=time.time(), step=int(step), summary=summary))

  def write_summaries(self, step: int, values: Mapping[str, Any],
                      metadata: Optional[Mapping[str, Any]] = None):
    del metadata
    self.write_scalars(step, values)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    from tensorboard.compat.proto import summary_pb2  # pylint: disable=g-import-not-at-top
    self._write_values(step, [
        summary_pb2.Summary.Value(tag=k, simple_value=float(np.asarray(v)))
        for k, v in scalars.items()])

  def write_texts(self, step: int, texts: Mapping[str, str]):
    from tensorboard.compat.proto import summary_pb2  # pylint: disable=g-import-not-at-top
    from tensorboard.plugins.text import metadata as text_metadata  # pylint: disable=g-import-not-at-top
    from tensorboard.util import tensor_util  # pylint: disable=g-import-not-at-top
    self._write_values(step, [
        summary_pb2.Summary.Value(
            tag=k, metadata=text_metadata.create_summary_metadata(
                display_name=k, description=''),
            tensor=tensor_util.make_tensor_proto(
                np.asarray(str(v).encode('utf-8'), dtype=object)))
        for k, v in texts.items()])

  def write_images(self, step: int, images: Mapping[str, Any]):
    """Images ``(N, H, W, C)`` or ``(H, W, C)``, floats in [0, 1] or uint8."""
    import io as _io  # pylint: disable=g-import-not-at-top
    import matplotlib.image  # pylint: disable=g-import-not-at-top
    from tensorboard.compat.proto import summary_pb2  # pylint: disable=g-import-not-at-top
    values = []
    for k, batch in images.items():
      batch = np.asarray(batch)
      batch = batch[None] if batch.ndim == 3 else batch
      for i, img in enumerate(batch):
        if img.shape[-1] == 1:
          img = np.repeat(img, 3, axis=-1)
        buf = _io.BytesIO()
        matplotlib.image.imsave(buf, img if img.dtype == np.uint8 else
                                np.clip(img, 0, 1), format='png')
        values.append(summary_pb2.Summary.Value(
            tag=k if len(batch) == 1 else f'{k}/{i}',
            image=summary_pb2.Summary.Image(
                height=img.shape[0], width=img.shape[1], colorspace=3,
                encoded_image_string=buf.getvalue())))
    self._write_values(step, values)

  def write_histograms(self, step: int, arrays: Mapping[str, Any],
                       num_buckets: Optional[Mapping[str, int]] = None):
    from tensorboard.compat.proto import summary_pb2  # pylint: disable=g-import-not-at-top
    values = []
    for k, arr in arrays.items():
      arr = np.asarray(arr, dtype=np.float64).ravel()
      counts, edges = np.histogram(
          arr, bins=(num_buckets or {}).get(k, 30))
      values.append(summary_pb2.Summary.Value(tag=k, histo=summary_pb2.HistogramProto(
          min=float(arr.min()), max=float(arr.max()), num=float(arr.size),
          sum=float(arr.sum()), sum_squares=float((arr ** 2).sum()),
          bucket_limit=[float(e) for e in edges[1:]],
          bucket=[float(c) for c in counts])))
    self._write_values(step, values)

  def write_hparams(self, hparams: Mapping[str, Any]):
    self.write_texts(0, {'hparams': json.dumps(
        {k: str(v) for k, v in hparams.items()}, indent=1)})

  def write_videos(self, step, videos):
    raise NotImplementedError('EventFileWriter does not write videos.')

  def write_audios(self, step, audios, *, sample_rate):
    raise NotImplementedError('EventFileWriter does not write audio.')

  def write_pointcloud(self, step, point_clouds, *, point_colors=None,
                       configs=None):
    raise NotImplementedError('EventFileWriter does not write point clouds.')

  def flush(self):
    if not self._fh.closed:
      self._fh.flush()

  def close(self):
    if not self._fh.closed:
      self._fh.close()


def read_events(path: str) -> Iterator[Any]:
  """The ``Event`` protos of one event file, in order.

  A record cut short (a run killed while writing) or failing its checksum
  ends the file: what follows it is not read.
  """
  from tensorboard.compat.proto import event_pb2  # pylint: disable=g-import-not-at-top
  from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c  # pylint: disable=g-import-not-at-top
  with open(path, 'rb') as fh:
    data = fh.read()
  pos = 0
  while pos + 12 <= len(data):
    header = data[pos:pos + 8]
    (length,) = struct.unpack('<Q', header)
    (header_crc,) = struct.unpack('<I', data[pos + 8:pos + 12])
    end = pos + 12 + length + 4
    if header_crc != masked_crc32c(header) or end > len(data):
      return
    body = data[pos + 12:pos + 12 + length]
    if struct.unpack('<I', data[end - 4:end])[0] != masked_crc32c(body):
      return
    yield event_pb2.Event.FromString(body)
    pos = end


def read_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
  """``{tag: [(step, value), ...]}`` of every event file in ``logdir``."""
  out = {}
  for path in sorted(glob.glob(os.path.join(logdir, 'events.out.tfevents.*'))):
    for event in read_events(path):
      for value in event.summary.value:
        if value.HasField('simple_value'):
          out.setdefault(value.tag, []).append((event.step, value.simple_value))
  return out


def _drop_events_after(logdir: str, step: int) -> None:
  """Keeps only the summaries of ``logdir``'s event files up to ``step``.

  As `_drop_log_records_after` for the JSON lines: the summaries of an
  interrupted run past its last checkpoint are written again by the resumed
  run, so TensorBoard would show those steps twice. Each event file is
  rewritten atomically without them (a file left with no summary is removed).
  """
  if jax.process_index() != 0:
    return
  for path in glob.glob(os.path.join(logdir, 'events.out.tfevents.*')):
    try:
      events = list(read_events(path))
    except Exception:  # pylint: disable=broad-except  # not ours: leave it
      continue
    kept = [e for e in events
            if not e.HasField('summary') or e.step <= step]
    if len(kept) == len(events) and os.path.getsize(path) == sum(
        len(e.SerializeToString()) + 16 for e in events):
      continue
    if not any(e.HasField('summary') for e in kept):
      os.remove(path)
      continue
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c  # pylint: disable=g-import-not-at-top
    with io.atomic_path(path) as tmp:
      with open(tmp, 'wb') as fh:
        for e in kept:
          data = e.SerializeToString()
          header = struct.pack('<Q', len(data))
          fh.write(header + struct.pack('<I', masked_crc32c(header)) + data
                   + struct.pack('<I', masked_crc32c(data)))


class MetricLogger:
  """Writes scalars to TensorBoard, a JSON-lines file and stdout.

  TensorBoard summaries go through `EventFileWriter` (no TensorFlow) into
  ``workdir/tensorboard/<name>``; on `start` at a resumed step, both the
  JSON lines and the event files lose what was logged past that step.
  """

  def __init__(self, workdir, name: str, *, total_steps: int,
               tensorboard: bool = True):
    self.name = name
    self.total_steps = total_steps
    os.makedirs(workdir, exist_ok=True)
    self.jsonl_path = os.path.join(workdir, f'metrics_{name}.jsonl')
    self.tensorboard_dir = os.path.join(workdir, 'tensorboard', name)
    self._tensorboard = tensorboard and jax.process_index() == 0
    self.writer = None
    self._t0, self._s0 = None, None

  def start(self, step: int):
    """Starts timing at ``step``; drops logged lines past it (lost work)."""
    self._t0, self._s0 = time.perf_counter(), step
    _drop_log_records_after(self.jsonl_path, step)
    if self._tensorboard:
      _drop_events_after(self.tensorboard_dir, step)
      if self.writer is None:
        self.writer = EventFileWriter(self.tensorboard_dir)

  def write(self, step: int, scalars: dict):
    """Logs training scalars averaged since the last call, with the step rate."""
    now = time.perf_counter()
    rate = (step - self._s0) / max(now - self._t0, 1e-9)
    self._t0, self._s0 = now, step
    self._emit(step, {**scalars, 'steps_per_sec': rate},
               f' ({rate:.1f} steps/s)')

  def write_eval(self, step: int, scalars: dict):
    """Logs evaluation scalars with a ``test_`` prefix."""
    if scalars:
      self._emit(step, {f'test_{k}': v for k, v in scalars.items()})

  def _emit(self, step: int, scalars: dict, suffix: str = ''):
    scalars = {k: float(v) for k, v in scalars.items()}
    if jax.process_index() == 0:
      with open(self.jsonl_path, 'a') as fh:
        fh.write(json.dumps({'step': step, **scalars}) + '\n')
    if self._tensorboard and self.writer is None:
      self.writer = EventFileWriter(self.tensorboard_dir)
    if self.writer is not None:
      self.writer.write_scalars(step, scalars)
      self.writer.flush()
    shown = ' '.join(f'{k}={v:.4g}' for k, v in scalars.items()
                     if k not in ('finite', 'steps_per_sec'))
    print(f'[{self.name}] step {step}/{self.total_steps} {shown}{suffix}',
          flush=True)

  def close(self):
    if self.writer is not None:
      self.writer.close()


def read_metric(jsonl_path: str, key: str) -> list[list[float]]:
  """``[[step, value], ...]`` of ``key`` in a run's JSON-lines metrics file.

  E.g. ``read_metric(workdir + '/metrics_f.jsonl', 'test_accuracy')`` is F's
  learning curve. A missing file gives ``[]``.
  """
  points = []
  if os.path.exists(jsonl_path):
    with open(jsonl_path) as fh:
      for line in fh:
        try:
          record = json.loads(line)
        except json.JSONDecodeError:  # a line cut off by a killed run
          continue
        if key in record:
          points.append([record['step'], record[key]])
  return points


def _drop_log_records_after(path: str, step: int) -> None:
  """Keeps only the JSON-lines records of ``path`` up to ``step``.

  Records past ``step`` come from an interrupted run (the resumed run writes
  them again); a line cut short by a kill is dropped too.
  """
  if not os.path.exists(path) or jax.process_index() != 0:
    return
  with open(path) as fh:
    lines = fh.read().splitlines()
  kept = []
  for line in lines:
    try:
      if json.loads(line)['step'] <= step:
        kept.append(line)
    except (ValueError, KeyError, TypeError):  # a half-written last line
      pass
  if len(kept) != len(lines):
    io.write_text(path, ''.join(line + '\n' for line in kept))


