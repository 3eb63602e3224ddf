"""Device mesh and shardings: the batch is split over the 'data' axis, parameters are replicated."""

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

DATA_AXIS = 'data'


def make_mesh() -> jax.sharding.Mesh:
  """A 1-D mesh over every device of every process, axis 'data'."""
  return jax.make_mesh((jax.device_count(),), (DATA_AXIS,),
                       axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh) -> NamedSharding:
  """Leading (batch) dimension split over 'data'."""
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(global_batch: int, mesh) -> None:
  if global_batch % mesh.size:
    raise ValueError(f'data.batch_size={global_batch} is not divisible by the {mesh.size} devices '
                     f'of the mesh; choose a multiple of {mesh.size}')


def global_batch(local_batch: dict, mesh) -> dict:
  """Host-local numpy batch -> global jax arrays sharded over 'data' (multi-host safe)."""
  sharding = batch_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local_batch.items()}


def to_host(tree):
  """Fully-replicated or addressable arrays -> numpy on this host."""
  return jax.tree.map(lambda a: np.asarray(jax.device_get(a)), tree)
