"""Data sets as endless, seeded, checkpointable iterators of numpy batches.

``it = make_dataset(config, seed, process_index, process_count)``, where ``config`` has at least
``name`` (a key of ``DATASETS``) and ``batch_size`` (the GLOBAL batch), plus the keys of that set:

* ``next(it)``: ``{'x': float32 [batch_size // process_count, *it.shape], 'label': int32 [...]}``;
  images are NHWC in [-1, 1], 2-D points are [B, 2]; labels are 0 for unconditional sets.
  ``couplings`` batches also hold ``'noise'``, the z whose teacher-ODE solution is ``'x'``.
* ``it.shape``: one example's shape; ``it.num_classes``: number of labels, 0 if unconditional.
* ``it.get_state()``: a JSON-serialisable dict; ``it.set_state(state)`` makes the same batches
  follow. The stream is a pure function of ``(seed, process_index, state)``, and the hosts'
  batches are disjoint slices of one global batch.
* A set whose files are not on this machine raises :class:`DataUnavailableError` (fastgen never
  downloads them).
"""

from fastgen.data import cifar10, couplings, digits, folder, imagenet, toy2d
from fastgen.data.tfds import DataUnavailableError

DATASETS = {
    'couplings': couplings.CouplingStream,
    'gmm2d': toy2d.Toy2D,
    'checkerboard': toy2d.Toy2D,
    'moons': toy2d.Toy2D,
    'rings': toy2d.Toy2D,
    'digits': digits.make_digits,
    'folder': folder.make_folder,
    'cifar10': cifar10.make_cifar10,
    'imagenet64': imagenet.make_imagenet64,
}


def make_dataset(config, seed: int = 0, process_index: int = 0, process_count: int = 1):
  """The iterator of data set ``config.name``, yielding this host's share of each global batch."""
  if config.name not in DATASETS:
    raise ValueError(f'unknown data set {config.name!r}; known: {", ".join(DATASETS)}')
  if config.batch_size % process_count:
    raise ValueError(f'data.batch_size={config.batch_size} is not divisible by the '
                     f'{process_count} processes')
  return DATASETS[config.name](config, seed, process_index, process_count)
