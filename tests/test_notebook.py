"""colab/quickstart.ipynb runs top to bottom (small settings) and leaves what it promises: the
teacher's and the one-step generator's sample grids, finite FIDs in both runs' metrics.jsonl,
and the FID plot."""

import json
import math
import os

import nbformat
import numpy as np
from nbclient import NotebookClient
from PIL import Image

from fastgen import images  # numpy and PIL only: the test process stays free of JAX

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, 'colab', 'quickstart.ipynb')


def _eval_values(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    records = [json.loads(line) for line in f]
  return {(r['step'], k): v for r in records for k, v in r.items() if k.startswith('eval/fid_')}


def test_quickstart_notebook_distils_a_one_step_generator(tmp_path, monkeypatch):
  monkeypatch.setenv('FASTGEN_NOTEBOOK_SMALL', '1')
  monkeypatch.delenv('FASTGEN_TEACHER_WORKDIR', raising=False)
  monkeypatch.setenv('PYTHONPATH', os.pathsep.join(  # the kernel imports this checkout's fastgen
      filter(None, [REPO, os.environ.get('PYTHONPATH')])))
  monkeypatch.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=1')  # like a CPU runtime
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  NotebookClient(notebook, timeout=600, kernel_name='python3',
                 resources={'metadata': {'path': str(tmp_path)}}).execute()

  outputs = [o for cell in notebook.cells if cell.cell_type == 'code' for o in cell.outputs]
  printed = ''.join(o.get('text', '') for o in outputs if o.output_type == 'stream')
  assert 'JAX backend: cpu' in printed, printed[-3000:]
  pictures = [o for o in outputs if 'image/png' in o.get('data', {})]
  assert len(pictures) == 3, printed[-3000:]  # teacher grid, generator grid, FID curves

  ten_by_ten = images.grid(np.zeros((100, 8, 8, 1)), upscale=8).shape[:2]
  for run in ('edm_digits', 'sid_digits'):
    workdir = tmp_path / 'runs' / run
    grid = np.asarray(Image.open(sorted((workdir / 'samples').glob('step_*.png'))[-1]))
    assert grid.shape == ten_by_ten and grid.std() > 0, (run, grid.shape)
    fids = _eval_values(workdir)
    assert fids and all(isinstance(v, float) and math.isfinite(v) for v in fids.values()), fids
  sid_fids = _eval_values(tmp_path / 'runs' / 'sid_digits')
  assert sorted({step for step, k in sid_fids if k == 'eval/fid_1step'}) == [20, 40], sid_fids
  assert any(k == 'eval/fid_teacher' for _, k in sid_fids), sid_fids
