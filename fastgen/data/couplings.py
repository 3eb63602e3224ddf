"""``couplings``: the (noise, teacher sample) pairs of :mod:`fastgen.couplings`, from disk.

Keys: ``batch_size``, ``directory`` (resolved by the trainer: '' means ``<workdir>/couplings``),
``source`` (the data section of the data set the teacher models: shape, classes, FID reference),
``num_pairs``, ``shard_size``, ``ode_steps``, ``ode_method``, ``ode_t_max`` (optional: where a
flow_euler solve starts), ``coupling_seed`` (how the trainer writes missing shards). Batches
are ``{'x': x0 [B, ...], 'noise': z [B, ...], 'label': [B]}`` in shuffled epochs that wrap
(:class:`fastgen.data.stream.ArrayStream`): the pair (z, x0) stays together, and the stream's
state is its step.
"""

import numpy as np

from fastgen import couplings
from fastgen.data import stream


class CouplingStream(stream.ArrayStream):
  """Shuffled epochs of a complete coupling set; ``num_classes`` from its metadata."""

  def __init__(self, config, seed: int, process_index: int, process_count: int):
    if not config.get('directory'):
      raise ValueError('data.name="couplings" needs data.directory (the trainer fills it in)')
    meta, pairs = couplings.read_couplings(config.directory)
    super().__init__(pairs['x'], pairs['label'], meta['num_classes'],
                     batch_size=config.batch_size, seed=seed, process_index=process_index,
                     process_count=process_count)
    self.noise = pairs['noise']

  def batch(self, step: int) -> dict[str, np.ndarray]:
    indices = self.indices(step)
    return {'x': self.x[indices], 'noise': self.noise[indices], 'label': self.label[indices]}
