"""Data sets: the iterator contract, determinism, resumption, host slicing, and each loader."""

import io
import json
import os
import pickle
import socket
import tarfile

import ml_collections
import numpy as np
import pytest
from PIL import Image

from fastgen import data
from fastgen.data import cifar10, digits, folder, toy2d

RED, BLUE = (255, 0, 0), (0, 0, 255)


@pytest.fixture(scope='module')
def image_dir(tmp_path_factory):
  """Two class subfolders of wide PNGs: red margins that the center crop removes, a class colour."""
  root = tmp_path_factory.mktemp('images')
  for name, colour in (('blue', BLUE), ('red', RED)):
    os.makedirs(root / name / 'nested')
    for i in range(3):
      pixels = np.zeros((6, 12, 3), np.uint8)
      pixels[:] = (0, 255, 0)
      pixels[:, 3:9] = colour
      where = root / name / ('nested' if i == 2 else '') / f'{i}.png'
      Image.fromarray(pixels).save(where)
  return str(root)


def _config(name, image_dir=None, **kwargs):
  if name == 'folder':
    kwargs = dict(path=image_dir, resolution=4, **kwargs)
  return ml_collections.ConfigDict(dict(dict(name=name, batch_size=8), **kwargs))


def _take(it, num):
  return [next(it) for _ in range(num)]


def _assert_same(batches, others):
  assert len(batches) == len(others)
  for a, b in zip(batches, others):
    np.testing.assert_array_equal(a['x'], b['x'])
    np.testing.assert_array_equal(a['label'], b['label'])


SETS = ['gmm2d', 'checkerboard', 'moons', 'rings', 'digits', 'folder']
SHAPES = {'digits': (8, 8, 1), 'folder': (4, 4, 3)}
NUM_CLASSES = {'digits': 10, 'folder': 2}


@pytest.mark.parametrize('name', SETS)
def test_batches_have_the_promised_shapes_dtypes_and_ranges(name, image_dir):
  it = data.make_dataset(_config(name, image_dir), seed=0)
  assert it.shape == SHAPES.get(name, (2,))
  assert it.num_classes == NUM_CLASSES.get(name, 0)
  for batch in _take(it, 3):
    assert batch['x'].shape == (8,) + it.shape and batch['x'].dtype == np.float32
    assert batch['label'].shape == (8,) and batch['label'].dtype == np.int32
    assert np.all(np.isfinite(batch['x']))
    if it.num_classes:
      assert 0 <= batch['label'].min() and batch['label'].max() < it.num_classes
    else:
      assert not batch['label'].any()
    if len(it.shape) == 3:
      assert -1 <= batch['x'].min() and batch['x'].max() <= 1


@pytest.mark.parametrize('name', SETS)
def test_same_seed_same_batches_other_seed_other_batches(name, image_dir):
  batches = _take(data.make_dataset(_config(name, image_dir), seed=3), 4)
  _assert_same(batches, _take(data.make_dataset(_config(name, image_dir), seed=3), 4))
  other = _take(data.make_dataset(_config(name, image_dir), seed=4), 4)
  assert any(not np.array_equal(a['x'], b['x']) for a, b in zip(batches, other))


@pytest.mark.parametrize('name', ['gmm2d', 'checkerboard', 'digits', 'folder'])
def test_restored_state_reproduces_the_continuation(name, image_dir):
  it = data.make_dataset(_config(name, image_dir), seed=1)
  _take(it, 5)
  state = json.loads(json.dumps(it.get_state()))
  expected = _take(it, 4)
  resumed = data.make_dataset(_config(name, image_dir), seed=1)
  next(resumed)
  resumed.set_state(state)
  _assert_same(expected, _take(resumed, 4))


@pytest.mark.parametrize('name', ['gmm2d', 'digits', 'folder'])
def test_hosts_get_disjoint_halves_that_make_up_the_single_host_batch(name, image_dir):
  """Exactly: host p's rows are rows [p B/2, (p+1) B/2) of the one-host batch."""
  config = _config(name, image_dir, batch_size=6)
  single = _take(data.make_dataset(config, seed=2), 3)
  halves = [_take(data.make_dataset(config, seed=2, process_index=p, process_count=2), 3)
            for p in range(2)]
  joined = [{k: np.concatenate([h0[k], h1[k]]) for k in h0} for h0, h1 in zip(*halves)]
  _assert_same(single, joined)


def test_unknown_name_and_indivisible_batch_are_refused():
  with pytest.raises(ValueError, match="'nope'.*gmm2d.*digits.*folder.*cifar10"):
    data.make_dataset(_config('nope'))
  with pytest.raises(ValueError, match='not divisible'):
    data.make_dataset(_config('gmm2d', batch_size=9), process_count=2)


def test_gmm2d_labels_are_components_of_the_exported_mixture():
  weights, means, covs = toy2d.gmm2d_mixture()
  np.testing.assert_allclose(weights.sum(), 1.0)
  it = data.make_dataset(_config('gmm2d', batch_size=100_000, conditional=True))
  assert it.num_classes == len(weights)
  batch = next(it)
  np.testing.assert_allclose(np.bincount(batch['label']) / 100_000, weights, atol=0.006)
  for k in range(len(weights)):
    x = batch['x'][batch['label'] == k]
    np.testing.assert_allclose(x.mean(0), means[k], atol=0.03)
    np.testing.assert_allclose(np.cov(x.T), covs[k], atol=0.02)
  assert np.all((0.9 < batch['x'].std(0)) & (batch['x'].std(0) < 1.1))


def test_digits_splits_are_fixed_and_disjoint():
  x_all, y_all = digits.load_digits_array('all')
  x_train, y_train = digits.load_digits_array('train')
  x_test, _ = digits.load_digits_array('test')
  assert (len(x_all), len(x_train), len(x_test)) == (1797, 1500, 297)
  assert x_train.min() == -1 and x_train.max() == 1 and y_train.dtype == np.int32
  rows = {r.tobytes(): n for r, n in zip(x_all.reshape(1797, -1), range(1797))}
  train = {rows[r.tobytes()] for r in x_train.reshape(1500, -1)}
  test = {rows[r.tobytes()] for r in x_test.reshape(297, -1)}
  assert not train & test
  with pytest.raises(ValueError, match='unknown digits split'):
    digits.load_digits_array('val')


def test_epochs_wrap_and_show_every_example_once():
  it = data.make_dataset(_config('digits', batch_size=128, split='test'), seed=0)
  order = np.concatenate([it.indices(step) for step in range(3 * 297 // 128 + 1)])
  for epoch in range(3):
    assert sorted(order[297 * epoch:297 * (epoch + 1)]) == list(range(297))
  assert not np.array_equal(order[:297], order[297:594])


def test_folder_classes_crop_and_resize(image_dir):
  images, labels, num_classes = folder.load_folder(image_dir, resolution=4)
  assert images.shape == (6, 4, 4, 3) and images.dtype == np.uint8 and num_classes == 2
  np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1, 1])  # 'blue' < 'red'
  colours = np.array([BLUE, RED])[labels][:, None, None]
  # The green margins were cropped away (bicubic reads a little past the crop at the edges).
  assert np.abs(images.astype(int) - colours).max() <= 16
  gray, _, _ = folder.load_folder(os.path.join(image_dir, 'red'), resolution=2, channels=1)
  assert gray.shape == (3, 2, 2, 1)  # images directly inside: unconditional


def test_folder_without_images_names_the_path(tmp_path):
  (tmp_path / 'empty').mkdir()
  with pytest.raises(ValueError, match='no .png/.jpg/.jpeg images under .*empty'):
    folder.load_folder(str(tmp_path / 'empty'), resolution=4)
  with pytest.raises(ValueError, match='missing.*is not a directory'):
    data.make_dataset(_config('folder', str(tmp_path / 'missing')))


@pytest.fixture
def no_network(monkeypatch):
  def refuse(*args, **kwargs):
    raise AssertionError('the data loader tried to use the network')
  monkeypatch.setattr(socket, 'socket', refuse)
  monkeypatch.setattr(socket, 'getaddrinfo', refuse)
  monkeypatch.setattr(socket, 'create_connection', refuse)


def _has_tfds():
  try:
    import tensorflow_datasets  # pylint: disable=g-import-not-at-top,unused-import
    return True
  except ImportError:
    return False


@pytest.mark.parametrize('name', ['cifar10', 'imagenet64'])
def test_set_missing_from_data_dir_says_how_to_provide_it(name, tmp_path, no_network):
  with pytest.raises(data.DataUnavailableError) as error:
    data.make_dataset(_config(name, data_dir=str(tmp_path)))
  message = str(error.value)
  tfds_parts = ('tfds build', '--file_format=array_record') if _has_tfds() else ('[tfds]',)
  other_format = 'cifar-10-python.tar.gz' if name == 'cifar10' else 'one subfolder of images'
  for part in (f"'{name}'", str(tmp_path), '--config.data.data_dir=', other_format, *tfds_parts):
    assert part in message


def _cifar_batch(images, labels):
  """A batch pickled as the CIFAR-10 authors did: bytes keys, R, G, B planes of 32x32 per row."""
  planes = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)
  return pickle.dumps({b'batch_label': b'batch', b'labels': [int(l) for l in labels],
                       b'data': planes, b'filenames': [b'x.png'] * len(images)}, protocol=2)


@pytest.fixture(scope='module')
def cifar_files(tmp_path_factory):
  """``(archive path, extracted folder, train images, train labels)``: 5 x 4 train, 3 test."""
  root = tmp_path_factory.mktemp('cifar')
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (23, 32, 32, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, 23)
  extracted = root / 'extracted' / cifar10.FOLDER
  os.makedirs(extracted)
  names = cifar10.SPLIT_FILES['train'] + cifar10.SPLIT_FILES['test']
  with tarfile.open(root / cifar10.ARCHIVE, 'w:gz') as archive:
    for i, name in enumerate(names):
      blob = _cifar_batch(images[4 * i:4 * i + 4], labels[4 * i:4 * i + 4])
      (extracted / name).write_bytes(blob)
      member = tarfile.TarInfo(f'{cifar10.FOLDER}/{name}')
      member.size = len(blob)
      archive.addfile(member, io.BytesIO(blob))
  return str(root / cifar10.ARCHIVE), str(extracted), images, labels


def test_cifar10_pickles_read_exactly_from_the_archive_or_the_extracted_folder(cifar_files):
  archive, extracted, images, labels = cifar_files
  for where in (archive, os.path.dirname(archive), extracted, os.path.dirname(extracted)):
    x, y = cifar10.read_batches(cifar10.locate(where), 'train')
    np.testing.assert_array_equal(x, images[:20])
    np.testing.assert_array_equal(y, labels[:20])
  x, y = cifar10.read_batches(cifar10.locate(archive), 'test')
  np.testing.assert_array_equal(x, images[20:])
  np.testing.assert_array_equal(y, labels[20:])
  it = data.make_dataset(_config('cifar10', data_dir=extracted, batch_size=20), seed=0)
  assert it.shape == (32, 32, 3) and it.num_classes == 10
  batch = next(it)  # one epoch: every train image once, scaled to [-1, 1]
  assert sorted(_rows(batch['x'])) == sorted(_rows(images[:20].astype(np.float32) / 127.5 - 1))


def test_cifar10_pickle_that_refers_to_code_is_refused(tmp_path):
  class Exploit:
    def __reduce__(self):
      return (os.system, ('echo owned',))
  os.makedirs(tmp_path / cifar10.FOLDER)
  (tmp_path / cifar10.FOLDER / 'test_batch').write_bytes(pickle.dumps({b'data': Exploit()}))
  with pytest.raises(pickle.UnpicklingError, match='posix.system: not a CIFAR file'):
    cifar10.read_batches(str(tmp_path / cifar10.FOLDER), 'test')


def test_imagenet64_from_class_subfolders(image_dir):
  it = data.make_dataset(_config('imagenet64', data_dir=image_dir, resolution=4), seed=0)
  assert it.shape == (4, 4, 3) and it.num_classes == 2
  batch = next(it)  # 6 images, batch 8: the second epoch begins
  colours = np.array([BLUE, RED])[batch['label']][:, None, None] / 127.5 - 1
  # Cropped and resized as the folder set does (bicubic reads a little past the crop at the edges).
  assert np.abs(batch['x'] - colours).max() <= 16 / 127.5


@pytest.fixture(params=['tfds', 'pickle'])
def mock_cifar10(request, monkeypatch, tmp_path, no_network):
  """``make(**config)``: cifar10 streams over TFDS's mock data (20 random images, no files), or
  over the first 20 images of pickle files."""
  if request.param == 'tfds':
    tfds = pytest.importorskip('tensorflow_datasets')
    monkeypatch.setattr(tfds.core.DatasetBuilder, 'is_prepared', lambda self: True)
  else:
    archive, *_ = request.getfixturevalue('cifar_files')

  def make(seed=0, process_index=0, process_count=1, **kwargs):
    if request.param == 'tfds':
      config = _config('cifar10', data_dir=str(tmp_path), **kwargs)
      with tfds.testing.mock_data(num_examples=20):
        return data.make_dataset(config, seed, process_index, process_count)
    config = _config('cifar10', data_dir=archive, **kwargs)
    return data.make_dataset(config, seed, process_index, process_count)
  return make


def test_grain_pipeline_on_cifar10(mock_cifar10):
  """The real grain pipeline over each source: contract, resumption, host slicing."""
  it = mock_cifar10(seed=5, random_flip=True)
  assert it.shape == (32, 32, 3) and it.num_classes == 10
  batches = _take(it, 4)  # 32 > 20 examples: crosses an epoch
  assert batches[0]['x'].shape == (8, 32, 32, 3) and batches[0]['x'].dtype == np.float32
  assert batches[0]['label'].dtype == np.int32
  assert -1 <= min(b['x'].min() for b in batches) and max(b['x'].max() for b in batches) <= 1
  _assert_same(batches, _take(mock_cifar10(seed=5, random_flip=True), 4))
  x = np.concatenate([b['x'] for b in batches])
  unflipped = np.concatenate([b['x'] for b in _take(mock_cifar10(seed=5), 4)])
  flipped = np.array([not np.array_equal(a, b) for a, b in zip(x, unflipped)])
  np.testing.assert_array_equal(x[flipped], unflipped[flipped][:, :, ::-1])
  assert 0 < flipped.mean() < 1

  state = json.loads(json.dumps(it.get_state()))
  expected = _take(it, 2)
  resumed = mock_cifar10(seed=5, random_flip=True)
  resumed.set_state(state)
  _assert_same(expected, _take(resumed, 2))

  single = _take(mock_cifar10(seed=5), 2)  # within the first epoch: no example twice
  halves = [_take(mock_cifar10(seed=5, process_index=p, process_count=2), 2) for p in range(2)]
  for whole, h0, h1 in zip(single, *halves):
    assert _rows(whole['x']) == sorted(_rows(h0['x']) + _rows(h1['x']))
    assert not set(_rows(h0['x'])) & set(_rows(h1['x']))


def _rows(x):
  return sorted(row.tobytes() for row in x)
