"""``cifar10``: the 32x32 CIFAR-10 images, from the python-pickle archive or from TFDS files.

``config.data_dir`` is any of: ``cifar-10-python.tar.gz`` as distributed by its authors
(Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html), the ``cifar-10-batches-py``
folder extracted from it, a folder holding either, or else a TFDS data dir (the ``tfds`` extra).
Split ``'train'`` is ``data_batch_1`` ... ``data_batch_5`` in order (50 000 images), ``'test'`` is
``test_batch`` (10 000). The pickles are read by an unpickler that builds only dicts, lists,
strings and numpy arrays, so a tampered file cannot run code.
"""

import io
import os
import pickle
import tarfile

import numpy as np

from fastgen.data import grain_stream, tfds

ARCHIVE = 'cifar-10-python.tar.gz'
FOLDER = 'cifar-10-batches-py'
SPLIT_FILES = {'train': [f'data_batch_{i}' for i in range(1, 6)], 'test': ['test_batch']}
SHAPE, NUM_CLASSES = (32, 32, 3), 10
OTHER_FORMAT = (f'Or download {ARCHIVE} from https://www.cs.toronto.edu/~kriz/cifar.html and '
                f'pass --config.data.data_dir=<the archive or its folder>.')
# The globals a pickled numpy array refers to (numpy.core in numpy 1.x, numpy._core in 2.x), and
# _codecs.encode, through which Python 3 writes bytes at pickle protocol 2.
_ARRAY_GLOBALS = {(module, name) for module in ('numpy.core.multiarray', 'numpy._core.multiarray')
                  for name in ('_reconstruct', 'scalar')} | {
                      ('numpy', 'ndarray'), ('numpy', 'dtype'), ('_codecs', 'encode')}


class _ArrayUnpickler(pickle.Unpickler):

  def find_class(self, module, name):
    if (module, name) not in _ARRAY_GLOBALS:
      raise pickle.UnpicklingError(f'CIFAR-10 batch refers to {module}.{name}: not a CIFAR file')
    return super().find_class(module, name)


def parse_batch(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
  """One pickled batch as ``(images uint8 [N, 32, 32, 3], labels int32 [N])``.

  A batch is ``{b'data': uint8 [N, 3072] (the R, G, B planes of 32x32, row-major),
  b'labels': [N ints]}``, pickled by Python 2 (hence ``encoding='bytes'``).
  """
  batch = _ArrayUnpickler(io.BytesIO(blob), encoding='bytes').load()
  images = np.asarray(batch[b'data'], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return np.ascontiguousarray(images), np.asarray(batch[b'labels'], np.int32)


def locate(data_dir: str) -> str | None:
  """The archive or extracted folder that ``data_dir`` is or holds; None if neither."""
  if not data_dir:
    return None
  if os.path.isfile(data_dir) and data_dir.endswith('.tar.gz'):
    return data_dir
  if os.path.isfile(os.path.join(data_dir, 'data_batch_1')):
    return data_dir
  for name in (FOLDER, ARCHIVE):
    if os.path.exists(os.path.join(data_dir, name)):
      return locate(os.path.join(data_dir, name))
  return None


def read_batches(path: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """``(images, labels)`` of ``split`` from the archive or extracted folder at ``path``."""
  if split not in SPLIT_FILES:
    raise ValueError(f'cifar10 from {path}: unknown split {split!r}; known: '
                     f'{", ".join(SPLIT_FILES)}')
  if os.path.isdir(path):
    blobs = []
    for name in SPLIT_FILES[split]:
      with open(os.path.join(path, name), 'rb') as f:
        blobs.append(f.read())
  else:
    with tarfile.open(path, 'r:gz') as archive:
      blobs = [archive.extractfile(f'{FOLDER}/{name}').read() for name in SPLIT_FILES[split]]
  parts = [parse_batch(blob) for blob in blobs]
  return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


class ArraySource:
  """In-memory images and labels as a random-access source of ``{'image', 'label'}`` records."""

  def __init__(self, images: np.ndarray, labels: np.ndarray):
    self.images, self.labels = images, labels

  def __len__(self) -> int:
    return len(self.images)

  def __getitem__(self, index: int) -> dict:
    return {'image': self.images[index], 'label': self.labels[index]}


def make_cifar10(config, seed: int, process_index: int, process_count: int):
  """Keys: ``batch_size``, ``data_dir``, ``split`` ('train'), ``random_flip`` (False)."""
  split, data_dir = config.get('split', 'train'), config.get('data_dir', '')
  path = locate(data_dir)
  if path:
    source, shape, num_classes = ArraySource(*read_batches(path, split)), SHAPE, NUM_CLASSES
  else:
    source, shape, num_classes = tfds.open_source('cifar10', split, data_dir, OTHER_FORMAT)
  return grain_stream.GrainStream(source, shape, num_classes, config, seed, process_index,
                                  process_count)
