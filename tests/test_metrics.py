"""The event files open in TensorBoard: read back with tensorboard's own event reader, scalars and
sample images come out as written; and the training entry points import no TensorFlow."""

import io
import subprocess
import sys

import numpy as np
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

from fastgen import metrics


def _read(logdir):
  accumulator = event_accumulator.EventAccumulator(
      str(logdir), size_guidance={event_accumulator.TENSORS: 0})
  accumulator.Reload()
  return accumulator


def test_scalars_and_images_read_back_with_tensorboard(tmp_path):
  logger = metrics.MetricLogger(str(tmp_path))
  logger.write(10, {'train/loss': 0.5, 'eval/fid_1step': float('nan')})
  logger.write(20, {'train/loss': 0.25})
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, (2, 6, 5, 3), dtype=np.uint8)
  gray = rng.integers(0, 256, (1, 4, 7, 1), dtype=np.uint8)
  logger.write_images(20, {'samples_rgb': rgb, 'samples_gray': gray})
  logger.close()

  accumulator = _read(tmp_path / 'tensorboard')
  assert set(accumulator.PluginTagToContent('scalars')) == {'train/loss', 'eval/fid_1step'}
  assert set(accumulator.PluginTagToContent('images')) == {'samples_rgb', 'samples_gray'}
  losses = accumulator.Tensors('train/loss')
  assert [e.step for e in losses] == [10, 20]
  assert [float(tensor_util.make_ndarray(e.tensor_proto)) for e in losses] == [0.5, 0.25]
  assert np.isnan(tensor_util.make_ndarray(accumulator.Tensors('eval/fid_1step')[0].tensor_proto))
  for tag, batch in [('samples_rgb', rgb), ('samples_gray', gray)]:
    (event,) = accumulator.Tensors(tag)
    width, height, *pngs = tensor_util.make_ndarray(event.tensor_proto)
    assert (event.step, int(width), int(height), len(pngs)) == (20, batch.shape[2],
                                                                batch.shape[1], len(batch))
    decoded = np.stack([np.asarray(Image.open(io.BytesIO(png))) for png in pngs])
    np.testing.assert_array_equal(decoded.reshape(batch.shape), batch)
  assert [r['step'] for r in metrics.read_metrics(str(tmp_path / 'metrics.jsonl'))] == [10, 20]


def test_events_are_readable_before_close(tmp_path):
  logger = metrics.MetricLogger(str(tmp_path))
  logger.write(1, {'train/loss': 2.0})
  assert [e.step for e in _read(tmp_path / 'tensorboard').Tensors('train/loss')] == [1]
  logger.close()


def test_training_entry_points_import_no_tensorflow():
  code = ('import sys, fastgen.main, fastgen.train, fastgen.metrics, fastgen.data; '
          'print(sorted(m for m in sys.modules if m.split(".")[0] in '
          '("tensorflow", "tensorflow_datasets", "clu")))')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == '[]', out.stdout
