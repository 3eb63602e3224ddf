"""Metrics: clu writers (TensorBoard events + log lines) and ``<workdir>/metrics.jsonl``.

Only process 0 writes. Each ``write`` appends one JSON object with ``step`` and ``wall_time``
(seconds since the run first started, carried across resumes).
"""

import json
import math
import os
import time

import jax


class MetricLogger:

  def __init__(self, workdir: str, resume_step: int = 0, wall_time_offset: float = 0.0):
    # Deferred: clu's writers import TensorFlow, which only a run that logs needs (the step, the
    # samplers and experiments/throughput.py run without it, e.g. on accelerator images).
    from clu import metric_writers  # pylint: disable=g-import-not-at-top
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self._is_host0 = jax.process_index() == 0
    self._writer = metric_writers.create_default_writer(
        os.path.join(workdir, 'tensorboard'), just_logging=not self._is_host0)
    self._start = time.time() - wall_time_offset
    if self._is_host0:
      truncate_after(self.path, resume_step)

  def wall_time(self) -> float:
    return time.time() - self._start

  def write(self, step: int, scalars: dict) -> None:
    scalars = {k: float(v) for k, v in scalars.items()}
    self._writer.write_scalars(step, scalars)
    if self._is_host0:
      record = {'step': int(step), 'wall_time': round(self.wall_time(), 3),
                **{k: (v if math.isfinite(v) else str(v)) for k, v in scalars.items()}}
      with open(self.path, 'a') as f:
        f.write(json.dumps(record) + '\n')

  def write_images(self, step: int, images: dict) -> None:
    self._writer.write_images(step, images)

  def close(self) -> None:
    self._writer.flush()
    self._writer.close()


def read_metrics(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def last_wall_time(path: str, step: int) -> float:
  """Wall time logged at or before ``step`` (0 if none), so resumed runs keep one clock."""
  if not os.path.exists(path):
    return 0.0
  times = [r['wall_time'] for r in read_metrics(path) if r['step'] <= step and 'wall_time' in r]
  return times[-1] if times else 0.0


def truncate_after(path: str, step: int) -> None:
  """Drop records of steps after ``step``: a resumed run re-does them (atomic rewrite)."""
  if not os.path.exists(path):
    return
  records = read_metrics(path)
  kept = [r for r in records if r['step'] <= step]
  if len(kept) == len(records):
    return
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    f.writelines(json.dumps(r) + '\n' for r in kept)
  os.replace(tmp, path)
