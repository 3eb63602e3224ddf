"""``cifar10`` and ``imagenet64`` from TFDS ArrayRecord files, read with grain; never downloads.

The pipeline is the flax-examples idiom: ``grain.MapDataset.source(tfds data source)``, a global
shuffle reseeded each epoch (``.repeat()``), images to float32 in [-1, 1], an optional random
horizontal flip seeded by stream position, then ``ds[process_index::process_count]`` and per-host
batches. Host ``p``'s batch ``n`` holds stream positions ``n B + p + k P`` (k < B / P), so the
hosts' batches are disjoint and together are the single-host batch (in another row order). The
state is grain's iterator state, ``{'next_index': int}``.
"""

import numpy as np


class DataUnavailableError(RuntimeError):
  """A data set's files are not on this machine (fastgen never downloads them)."""


# fastgen name -> TFDS name
TFDS_NAMES = {'cifar10': 'cifar10', 'imagenet64': 'imagenet_resized/64x64'}


def open_source(name: str, split: str, data_dir: str):
  """``(data source, info)`` of a TFDS set prepared as ArrayRecord; else DataUnavailableError."""
  import tensorflow_datasets as tfds  # Deferred like grain below: only these two sets need it.
  builder = tfds.builder(TFDS_NAMES[name], data_dir=data_dir or None)
  how = (f'fastgen never downloads. On a machine with internet run\n'
         f'  tfds build {TFDS_NAMES[name]} --data_dir=DIR --file_format=array_record\n'
         f'(or: python -c "import tensorflow_datasets as tfds; tfds.builder({TFDS_NAMES[name]!r}, '
         f'data_dir=\'DIR\', file_format=\'array_record\').download_and_prepare()"),\n'
         f'copy DIR to this machine and pass --config.data.data_dir=DIR.')
  if not builder.is_prepared():
    raise DataUnavailableError(
        f'data set {name!r} (TFDS {TFDS_NAMES[name]!r}) was not found under '
        f'data_dir={data_dir!r} (looked for {builder.data_dir}). {how}')
  try:
    return builder.as_data_source(split=split), builder.info
  except NotImplementedError as e:  # Prepared, but as TFRecord: no random access.
    raise DataUnavailableError(
        f'data set {name!r} under {builder.data_dir} is not in ArrayRecord format. {how}') from e


def to_example(record: dict) -> dict[str, np.ndarray]:
  """A TFDS record ``{'image' uint8, 'label'}`` as ``{'x': float32 in [-1, 1], 'label': int32}``."""
  return {'x': record['image'].astype(np.float32) / 127.5 - 1.0,
          'label': np.asarray(record['label'], np.int32)}


def random_flip(example: dict, rng: np.random.Generator) -> dict:
  """Mirror the image left-right with probability 1/2."""
  if rng.random() < 0.5:
    return dict(example, x=example['x'][:, ::-1])
  return example


class TfdsStream:
  """Keys: ``name``, ``batch_size``, ``data_dir``, ``split`` ('train'), ``random_flip`` (False)."""

  def __init__(self, config, seed: int, process_index: int, process_count: int):
    import grain  # Deferred: importing grain costs a second that the other sets need not pay.
    source, info = open_source(config.name, config.get('split', 'train'),
                               config.get('data_dir', ''))
    self.shape = tuple(info.features['image'].shape)
    self.num_classes = info.features['label'].num_classes
    ds = grain.MapDataset.source(source).seed(seed).shuffle().repeat().map(to_example)
    if config.get('random_flip', False):
      ds = ds.random_map(random_flip)
    ds = ds[process_index::process_count].to_iter_dataset()
    self._iterator = iter(ds.batch(config.batch_size // process_count, drop_remainder=True))

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    return next(self._iterator)

  def get_state(self) -> dict:
    return self._iterator.get_state()

  def set_state(self, state: dict) -> None:
    self._iterator.set_state(state)
