"""The 1797 8x8 handwritten digits that ship with scikit-learn (no download), 10 classes.

Pixels 0..16 are scaled to [-1, 1]; images are [8, 8, 1]. A fixed split (independent of the run's
seed, so teachers, students and evaluators agree) holds out 297 images as ``'test'``; the other
1500 are ``'train'``, the default; ``'all'`` is all 1797.
"""

import functools

import numpy as np

from fastgen.data import stream

SPLITS = ('train', 'test', 'all')
NUM_TEST = 297
_SPLIT_SEED = 0


@functools.lru_cache(maxsize=None)
def load_digits_array(split: str = 'train') -> tuple[np.ndarray, np.ndarray]:
  """``(x [N, 8, 8, 1] float32 in [-1, 1], y [N] int32)`` of ``split``, in sklearn's order.

  The arrays are cached and read-only.
  """
  if split not in SPLITS:
    raise ValueError(f'unknown digits split {split!r}; known: {", ".join(SPLITS)}')
  from sklearn import datasets  # Imported here: a ~1.3 s import every other data set skips.
  digits = datasets.load_digits()
  x = (digits.images / 8.0 - 1.0).astype(np.float32)[..., None]
  y = digits.target.astype(np.int32)
  if split != 'all':
    test = np.zeros(len(y), bool)
    test[np.random.default_rng(_SPLIT_SEED).permutation(len(y))[:NUM_TEST]] = True
    keep = test if split == 'test' else ~test
    x, y = x[keep], y[keep]
  x.flags.writeable = False
  y.flags.writeable = False
  return x, y


def make_digits(config, seed: int, process_index: int, process_count: int) -> stream.ArrayStream:
  """Shuffled epochs of ``load_digits_array(config.split)``; keys: ``batch_size``, ``split``."""
  x, y = load_digits_array(config.get('split', 'train'))
  return stream.ArrayStream(x, y, 10, batch_size=config.batch_size, seed=seed,
                            process_index=process_index, process_count=process_count)
