"""Metric logs of a run: progress lines, JSON lines, TensorBoard scalars."""

from __future__ import annotations

import json
import os
import time

import jax

from lanjax import io


class MetricLogger:
  """Writes scalars to TensorBoard (clu), a JSON-lines file and stdout."""

  def __init__(self, workdir, name: str, *, total_steps: int,
               tensorboard: bool = True):
    self.name = name
    self.total_steps = total_steps
    os.makedirs(workdir, exist_ok=True)
    self.jsonl_path = os.path.join(workdir, f'metrics_{name}.jsonl')
    self.writer = None
    if tensorboard:
      from clu import metric_writers  # pylint: disable=g-import-not-at-top
      self.writer = metric_writers.create_default_writer(
          os.path.join(workdir, 'tensorboard', name),
          just_logging=jax.process_index() > 0, asynchronous=False)
    self._t0, self._s0 = None, None

  def start(self, step: int):
    """Starts timing at ``step``; drops logged lines past it (lost work)."""
    self._t0, self._s0 = time.perf_counter(), step
    _drop_log_records_after(self.jsonl_path, step)

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


