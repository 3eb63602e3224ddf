"""Bad PyTorch / EDM files and signals thrown at the reader (fastgen.teachers.torch_files) and the
converter (python -m fastgen.teachers.edm_import): each gives one error naming the file, nothing
large is allocated, and no partial workdir is left behind."""

import collections
import glob
import io
import os
import pickle
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from fastgen.teachers import torch_files
from tests.teachers import edm_reference
from tests.teachers import test_edm_import

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _View:
  """A tensor pickled as ``_rebuild_tensor_v2(storage, offset, size, stride, ...)`` with any
  view, however it relates to its storage."""

  def __init__(self, storage, offset, size, stride):
    self.storage, self.args = storage, (offset, size, stride)

  def __reduce__(self):
    return (torch_files.Global('torch._utils', '_rebuild_tensor_v2'),
            (self.storage, *self.args, False, collections.OrderedDict()))


def _torch_zip(path, offset, size, stride, numel=1, record_bytes=None):
  """A torch.save zip holding {'w': one view} of a float32 storage of ``numel`` elements."""
  storage = object()
  pid = ('storage', torch_files.Global('torch', 'FloatStorage'), '0', 'cpu', numel)
  buffer = io.BytesIO()
  torch_files.GlobalPickler(buffer, 2, {id(storage): pid}).dump(
      {'w': _View(storage, offset, size, stride)})
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('archive/data.pkl', buffer.getvalue())
    archive.writestr('archive/byteorder', b'little')
    archive.writestr('archive/data/0', record_bytes if record_bytes is not None
                     else np.arange(numel, dtype=np.float32).tobytes())
  return str(path)


def _network_pickle(tmp_path):
  state_dict, _ = test_edm_import._edm_state_dict('ddpmpp_cond_vp')
  path = str(tmp_path / 'network-snapshot.pkl')
  edm_reference.write_network_pickle(path, {f'model.{k}': v for k, v in state_dict.items()},
                                     *test_edm_import.CASES['ddpmpp_cond_vp'])
  return path


def _refused(path, message):
  with pytest.raises(torch_files.TorchFileError) as error:
    torch_files.load(path)
  assert str(path) in str(error.value) and message in str(error.value), error.value
  return str(error.value)


def test_a_well_formed_view_still_loads(tmp_path):
  path = _torch_zip(tmp_path / 'ok.pt', 1, (2, 3), (1, 2), numel=8)
  np.testing.assert_array_equal(torch_files.load(path)['w'],
                                np.arange(1, 8, dtype=np.float32)[[[0, 2, 4], [1, 3, 5]]])


def test_stride_zero_terabyte_view_is_refused_before_allocating(tmp_path):
  """A 1e6 x 1e6 stride-0 view of one float (3.6 TiB as a copy) in a file of under 2 KB."""
  path = _torch_zip(tmp_path / 'bomb.pt', 0, (10**6, 10**6), (0, 0))
  assert os.path.getsize(path) < 2048
  _refused(path, 'repeats the elements of its storage (1000000000000 elements from 1)')


@pytest.mark.parametrize('offset, size, stride, numel, message', [
    (0, (10,), (1,), 4, 'overruns its storage of 4 elements'),
    (3, (2,), (1,), 4, 'overruns its storage of 4 elements'),
    (0, (2, 2), (-1, 1), 4, 'has a negative entry'),
    (-1, (1,), (1,), 4, 'has a negative entry'),
    (0, (2, 2), (1,), 4, 'malformed tensor view'),
])
def test_views_outside_their_storage_are_refused(tmp_path, offset, size, stride, numel, message):
  _refused(_torch_zip(tmp_path / 'view.pt', offset, size, stride, numel), message)


def test_a_record_shorter_than_its_storage_is_refused_before_reading(tmp_path):
  path = _torch_zip(tmp_path / 'short.pt', 0, (10**9,), (1,), numel=10**9, record_bytes=b'1234')
  _refused(path, 'record archive/data/0 holds 4 bytes, its storage of 1000000000 float32 '
                 'elements 4000000000')


def test_truncated_torch_zip_is_named_as_such(tmp_path):
  path = str(tmp_path / 'model.pt')
  torch_files.save_torch_zip(path, {'w': np.ones((16, 16), np.float32)})
  data = open(path, 'rb').read()
  for keep in (len(data) // 2, len(data) - 10, 100):
    with open(path, 'wb') as f:
      f.write(data[:keep])
    _refused(path, 'is a truncated or corrupt zip file')


def test_corrupt_zip_record_is_named(tmp_path):
  path = str(tmp_path / 'model.pt')
  torch_files.save_torch_zip(path, {'w': np.ones((64, 64), np.float32)})
  data = bytearray(open(path, 'rb').read())
  data[len(data) // 2] ^= 0xFF  # inside the record: its CRC-32 no longer matches
  with open(path, 'wb') as f:
    f.write(bytes(data))
  _refused(path, 'is a truncated or corrupt zip file: Bad CRC-32')


def test_truncated_network_pickle_names_the_file(tmp_path):
  path = _network_pickle(tmp_path)
  data = open(path, 'rb').read()
  for keep in (len(data) - 1, len(data) // 2, 7):
    with open(path, 'wb') as f:
      f.write(data[:keep])
    _refused(path, 'is a truncated pickle')


@pytest.mark.parametrize('content', [b'', b'hello world\n', bytes(range(256)) * 4,
                                     pickle.dumps({'w': 1}, protocol=0)])
def test_foreign_files_are_named(tmp_path, content):
  path = tmp_path / 'model.pt'
  path.write_bytes(content)
  _refused(str(path), 'is neither a zip file (torch.save, .npz) nor a pickle')


def test_format_is_read_from_the_content_not_the_name(tmp_path):
  arrays = {'a': np.arange(3, dtype=np.float32)}
  npz_named_pt, pt_named_npz = str(tmp_path / 'a.pt'), str(tmp_path / 'b.npz')
  with open(npz_named_pt, 'wb') as f:
    np.savez(f, **arrays)
  torch_files.save_torch_zip(pt_named_npz, arrays)
  for path in (npz_named_pt, pt_named_npz):
    np.testing.assert_array_equal(torch_files.load(path)['a'], arrays['a'])


# ------------------------------------------------------------------- the converter's command line


def _convert(source, workdir, wait=True):
  proc = subprocess.Popen(
      [sys.executable, '-m', 'fastgen.teachers.edm_import', str(source), f'--workdir={workdir}'],
      cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), stderr=subprocess.PIPE, text=True)
  if wait:
    proc.wait(timeout=300)
  return proc


def test_converter_reports_a_bad_file_in_one_line(tmp_path):
  """The terabyte view through the command line: exit 1, one error line naming the file."""
  path = _torch_zip(tmp_path / 'bomb.pt', 0, (10**6, 10**6), (0, 0))
  proc = _convert(path, tmp_path / 'teacher')
  err = proc.stderr.read()
  assert proc.returncode == 1, err[-2000:]
  last = err.strip().splitlines()[-1]
  assert last.startswith('fastgen: error: ') and path in last and 'repeats' in last, err[-2000:]
  assert 'Traceback' not in err
  assert not glob.glob(str(tmp_path / 'teacher*'))


@pytest.mark.parametrize('signum, delay', [(signal.SIGTERM, 0.0), (signal.SIGINT, 0.2)])
def test_signal_during_conversion_leaves_no_partial_workdir(tmp_path, signum, delay):
  """The signal arrives ``delay`` s after <workdir>.partial-<pid> appears (mid-write): the
  converter removes it and exits 128 + signum with one line, or had already finished."""
  source = _network_pickle(tmp_path)
  workdir = tmp_path / 'teacher'
  proc = _convert(source, workdir, wait=False)
  deadline = time.time() + 240
  while proc.poll() is None and time.time() < deadline:
    if glob.glob(f'{workdir}.partial-*'):
      time.sleep(delay)
      proc.send_signal(signum)
      break
    time.sleep(0.002)
  err = proc.communicate(timeout=240)[1]
  assert not glob.glob(f'{workdir}.partial-*'), err[-2000:]
  if proc.returncode == 0:  # finished before the signal came: a complete workdir
    assert (workdir / 'config.json').exists()
    return
  assert proc.returncode == 128 + signum, err[-2000:]
  name = signal.Signals(signum).name
  assert err.strip().splitlines()[-1] == f'fastgen: error: interrupted by {name}; {workdir} ' \
                                          f'not written', err[-2000:]
  assert 'Traceback' not in err and not workdir.exists()
