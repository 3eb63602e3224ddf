"""Reference-statistics command and the metrics plots."""

import json
import os
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from fastgen.evaluation import extractors, frechet, reference

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_digits_reference_uses_every_image_once():
  extractor = extractors.make_extractor('digits')
  config = ml_collections.ConfigDict(dict(name='digits', split='test'))
  stats = reference.compute_reference(extractor, reference.image_batches(config, 0, 100))
  assert stats.count == 297 and stats.dim == 64


def test_stream_reference_rounds_up_to_whole_batches():
  class Features:  # data-space "features" of the 2-D points
    dim = 2

    def features(self, points):
      return points
  config = ml_collections.ConfigDict(dict(name='gmm2d'))
  stats = reference.compute_reference(Features(), reference.image_batches(config, 1000, 256))
  assert stats.count == 1024
  with pytest.raises(ValueError, match='number of reference images'):
    next(reference.image_batches(config, 0, 256))


def test_reference_command(tmp_path):
  out = str(tmp_path / 'digits.npz')
  result = subprocess.run(
      [sys.executable, '-m', 'fastgen.evaluation.reference', '--dataset=digits', '--split=test',
       '--features=digits', f'--out={out}'], cwd=ROOT, capture_output=True, text=True, check=True)
  assert '297 images' in result.stdout
  mu, sigma = frechet.load_reference(out, expected_dim=64)
  assert sigma.shape == (64, 64) and np.isfinite(mu).all()


def test_plot_metrics(tmp_path):
  pytest.importorskip('matplotlib')
  records = [{'step': 100 * i, 'wall_time': 3.0 * i, 'eval/fid_1step': 50.0 / i,
              'eval/fid_2step': 'nan' if i == 2 else 30.0 / i, 'train/loss': 1.0}
             for i in range(1, 5)]
  records.append({'step': 400, 'wall_time': 12.5, 'eval/fid_teacher': 2.0})
  with open(tmp_path / 'metrics.jsonl', 'w') as f:
    f.writelines(json.dumps(r) + '\n' for r in records)
  script = os.path.join(ROOT, 'experiments', 'plot_metrics.py')
  result = subprocess.run([sys.executable, script, str(tmp_path)], capture_output=True, text=True,
                          check=True)
  for name in ('fid_vs_step.png', 'fid_vs_wallclock.png'):
    assert os.path.getsize(tmp_path / name) > 1000 and name in result.stdout
  empty = tmp_path / 'empty'
  empty.mkdir()
  result = subprocess.run([sys.executable, script, str(empty)], capture_output=True, text=True)
  assert result.returncode != 0 and 'metrics.jsonl not found' in result.stderr
