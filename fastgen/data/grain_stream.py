"""Random-access image sources (TFDS ArrayRecord, CIFAR-10 pickles, image folders) as batches.

The pipeline is the flax-examples idiom: ``grain.MapDataset.source(source)``, a global shuffle
reseeded each epoch (``.repeat()``), images to float32 in [-1, 1], an optional random horizontal
flip seeded by stream position, then ``ds[process_index::process_count]`` and per-host batches.
Host ``p``'s batch ``n`` holds stream positions ``n B + p + k P`` (k < B / P), so the hosts'
batches are disjoint and together are the single-host batch (in another row order). The state is
grain's iterator state, ``{'next_index': int}``.

A source is a sequence (``len`` and ``[i]``) of records ``{'image': uint8 [H, W, C], 'label'}``.
"""

import numpy as np


def to_example(record: dict) -> dict[str, np.ndarray]:
  """A record ``{'image' uint8, 'label'}`` as ``{'x': float32 in [-1, 1], 'label': int32}``."""
  return {'x': record['image'].astype(np.float32) / 127.5 - 1.0,
          'label': np.asarray(record['label'], np.int32)}


def random_flip(example: dict, rng: np.random.Generator) -> dict:
  """Mirror the image left-right with probability 1/2."""
  if rng.random() < 0.5:
    return dict(example, x=example['x'][:, ::-1])
  return example


class GrainStream:
  """This host's batches of ``source``; config keys ``batch_size``, ``random_flip`` (False)."""

  def __init__(self, source, shape: tuple[int, ...], num_classes: int, config, seed: int,
               process_index: int, process_count: int):
    import grain  # Deferred: importing grain costs a second that the other sets need not pay.
    self.shape = tuple(shape)
    self.num_classes = num_classes
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
