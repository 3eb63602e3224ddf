"""Step-indexed batch streams: batch ``n`` is a pure function of ``(seed, n)``, so state is ``n``.

Both kinds here see the GLOBAL batch and hand each host its own rows of it: host ``p`` of ``P``
yields rows ``[p L, (p + 1) L)`` (``L = batch_size // P``), so the hosts' batches are disjoint and
together are exactly the batch a single host would yield.
"""

import functools

import numpy as np


class StepStream:
  """An endless iterator of ``{'x', 'label'}`` numpy batches with state ``{'step': n}``.

  Subclasses set ``shape`` and ``num_classes`` and define ``batch(step)``: this host's rows of
  global batch ``step``.
  """

  shape: tuple[int, ...]
  num_classes: int

  def __init__(self, batch_size: int, process_index: int, process_count: int):
    self.batch_size = batch_size
    local = batch_size // process_count
    self.rows = slice(process_index * local, (process_index + 1) * local)
    self.step = 0

  def batch(self, step: int) -> dict[str, np.ndarray]:
    raise NotImplementedError

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    batch = self.batch(self.step)
    self.step += 1
    return batch

  def get_state(self) -> dict:
    return {'step': self.step}

  def set_state(self, state: dict) -> None:
    self.step = int(state['step'])


@functools.lru_cache(maxsize=4)
def epoch_permutation(seed: int, epoch: int, size: int) -> np.ndarray:
  """The order of the ``size`` examples in ``epoch``: a permutation seeded by ``(seed, epoch)``."""
  permutation = np.random.default_rng([seed, epoch]).permutation(size)
  permutation.flags.writeable = False  # Shared through the cache.
  return permutation


class ArrayStream(StepStream):
  """In-memory examples in shuffled epochs that wrap: nothing is dropped, none is repeated early.

  The examples form one endless sequence, the concatenation of ``epoch_permutation(seed, e)`` for
  ``e = 0, 1, ...``; global batch ``n`` is positions ``[n B, (n + 1) B)`` of it, so a batch may
  straddle two epochs and every epoch shows each example exactly once.

  ``x`` is float32 in [-1, 1], or uint8 in [0, 255] (kept 4x smaller; scaled per batch).
  """

  def __init__(self, x: np.ndarray, label: np.ndarray, num_classes: int, *, batch_size: int,
               seed: int, process_index: int, process_count: int):
    super().__init__(batch_size, process_index, process_count)
    if x.dtype not in (np.float32, np.uint8):
      raise ValueError(f'ArrayStream takes float32 or uint8 examples, got {x.dtype}')
    self.x, self.label = x, label.astype(np.int32)
    self.shape = x.shape[1:]
    self.num_classes = num_classes
    self.seed = seed

  def indices(self, step: int) -> np.ndarray:
    """Which examples fill this host's rows of global batch ``step``."""
    size = len(self.x)
    positions = step * self.batch_size + np.arange(self.batch_size)[self.rows]
    epochs, offsets = np.divmod(positions, size)
    indices = np.empty_like(positions)
    for epoch in np.unique(epochs):
      where = epochs == epoch
      indices[where] = epoch_permutation(self.seed, int(epoch), size)[offsets[where]]
    return indices

  def batch(self, step: int) -> dict[str, np.ndarray]:
    indices = self.indices(step)
    x = self.x[indices]
    if x.dtype == np.uint8:
      x = x.astype(np.float32) / 127.5 - 1.0
    return {'x': x, 'label': self.label[indices]}
