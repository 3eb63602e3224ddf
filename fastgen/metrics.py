"""Metrics: TensorBoard event files and ``<workdir>/metrics.jsonl``, written without TensorFlow.

Only process 0 writes. Each ``write`` appends one JSON object with ``step`` and ``wall_time``
(seconds since the run first started, carried across resumes) and the same scalars as
TensorBoard events under ``<workdir>/tensorboard``.
"""

import io
import json
import math
import os
import socket
import time

import jax
import numpy as np
from absl import logging
from PIL import Image


class EventWriter:
  """TensorBoard event file writer with the write methods of clu's ``MetricWriter``.

  ``write_scalars(step, {tag: float})`` and ``write_images(step, {tag: uint8 [N, H, W, C]})``
  write the summaries that ``tf.summary.scalar`` / ``tf.summary.image`` write (clu's default
  writer): a float32 scalar tensor with plugin ``scalars``, and a string tensor
  ``[width, height, png_1, ..., png_N]`` with plugin ``images``. Records use TensorBoard's
  TFRecord framing (``tensorboard.summary.writer.record_writer``) and its protobufs; the file is
  a plain local file, so neither TensorFlow nor a gfile backend is imported. C is 1 (grayscale)
  or 3 (RGB); clu also takes [H, W, C] for one image.
  """

  def __init__(self, logdir: str):
    # Deferred: the protobufs and the record writer cost ~0.4 s that the step, the samplers and
    # --help need not pay.
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, types_pb2  # pylint: disable=g-import-not-at-top
    from tensorboard.summary.writer import record_writer  # pylint: disable=g-import-not-at-top
    self._event_pb2, self._summary_pb2 = event_pb2, summary_pb2
    self._tensor_pb2, self._types_pb2 = tensor_pb2, types_pb2
    os.makedirs(logdir, exist_ok=True)
    self.path = os.path.join(
        logdir, f'events.out.tfevents.{time.time():.0f}.{socket.gethostname()}.{os.getpid()}.v2')
    self._file = open(self.path, 'wb')
    self._records = record_writer.RecordWriter(self._file)
    self._write_event(file_version='brain.Event:2')

  def _write_event(self, **fields) -> None:
    event = self._event_pb2.Event(wall_time=time.time(), **fields)
    self._records.write(event.SerializeToString())

  def _write_summary(self, step: int, plugin: str, tensors: dict) -> None:
    metadata = self._summary_pb2.SummaryMetadata(
        plugin_data=self._summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin))
    summary = self._summary_pb2.Summary(value=[
        self._summary_pb2.Summary.Value(tag=tag, metadata=metadata, tensor=tensor)
        for tag, tensor in tensors.items()])
    self._write_event(step=int(step), summary=summary)
    self._file.flush()  # A TensorBoard watching the run sees each write at once.

  def write_scalars(self, step: int, scalars: dict) -> None:
    self._write_summary(step, 'scalars', {
        tag: self._tensor_pb2.TensorProto(dtype=self._types_pb2.DT_FLOAT,
                                          float_val=[float(value)])
        for tag, value in scalars.items()})

  def write_images(self, step: int, images: dict) -> None:
    tensors = {}
    for tag, batch in images.items():
      batch = np.asarray(batch)
      batch = batch[None] if batch.ndim == 3 else batch
      height, width = batch.shape[1:3]
      strings = [str(width).encode(), str(height).encode()] + [png_bytes(i) for i in batch]
      tensors[tag] = self._tensor_pb2.TensorProto(
          dtype=self._types_pb2.DT_STRING, string_val=strings,
          tensor_shape={'dim': [{'size': len(strings)}]})
    self._write_summary(step, 'images', tensors)

  def flush(self) -> None:
    self._file.flush()

  def close(self) -> None:
    self._file.close()


def png_bytes(image: np.ndarray) -> bytes:
  """An uint8 [H, W, C] image (C = 1 or 3) encoded as PNG."""
  buffer = io.BytesIO()
  Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format='PNG')
  return buffer.getvalue()


class MetricLogger:

  def __init__(self, workdir: str, resume_step: int = 0, wall_time_offset: float = 0.0):
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self._is_host0 = jax.process_index() == 0
    self._writer = EventWriter(os.path.join(workdir, 'tensorboard')) if self._is_host0 else None
    self._start = time.time() - wall_time_offset
    if self._is_host0:
      truncate_after(self.path, resume_step)

  def wall_time(self) -> float:
    return time.time() - self._start

  def write(self, step: int, scalars: dict) -> None:
    if not self._is_host0:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    self._writer.write_scalars(step, scalars)
    record = {'step': int(step), 'wall_time': round(self.wall_time(), 3),
              **{k: (v if math.isfinite(v) else str(v)) for k, v in scalars.items()}}
    with open(self.path, 'a') as f:
      f.write(json.dumps(record) + '\n')

  def write_images(self, step: int, images: dict) -> None:
    if self._is_host0:
      self._writer.write_images(step, images)

  def close(self) -> None:
    if self._is_host0:
      self._writer.flush()
      self._writer.close()


class MetricsFileError(ValueError):
  """A ``metrics.jsonl`` line that is not a JSON record with a step."""


def _read_records(path: str) -> tuple[list[dict], bool]:
  """``(records, torn)``: the records of ``metrics.jsonl``; ``torn`` when its last line was cut
  short (no newline, not JSON: a write interrupted by a kill or a full disk), which is left out.
  Any other bad line is a :class:`MetricsFileError` naming the file and the line."""
  try:
    with open(path, 'rb') as f:
      lines = f.read().split(b'\n')
  except OSError as e:
    raise MetricsFileError(f'cannot read {path}: {e.strerror}') from e
  records, torn = [], False
  for number, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
      if not isinstance(record, dict) or not isinstance(record.get('step'), int):
        raise ValueError('not a record with an integer "step"')
    except ValueError as e:
      if number == len(lines):  # the last line, with no newline after it
        torn = True
        continue
      raise MetricsFileError(
          f'{path} line {number} is not a metrics record ({e}); the checkpoints are not '
          f'affected: delete that line (or the file) and run again') from None
    records.append(record)
  return records, torn


def read_metrics(path: str) -> list[dict]:
  """The records of ``metrics.jsonl`` (none if there is no such file), a torn last line left
  out."""
  return _read_records(path)[0] if os.path.exists(path) else []


def last_wall_time(records: list[dict], step: int) -> float:
  """Wall time logged at or before ``step`` in ``records`` (0 if none), so resumed runs keep
  one clock."""
  times = [r['wall_time'] for r in records if r['step'] <= step and 'wall_time' in r]
  return times[-1] if times else 0.0


def truncate_after(path: str, step: int) -> None:
  """Drop records of steps after ``step`` (a resumed run re-does them) and a torn last line
  (atomic rewrite)."""
  if not os.path.exists(path):
    return
  records, torn = _read_records(path)
  kept = [r for r in records if r['step'] <= step]
  if len(kept) == len(records) and not torn:
    return
  if torn:
    logging.warning('%s: dropped its last line, cut short by an interrupted write', path)
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    f.writelines(json.dumps(r) + '\n' for r in kept)
  os.replace(tmp, path)
