"""Device mesh and shardings. The mesh has a 'data' axis, over which the batch is split, and a
'model' axis, over which parameters and optimizer state are split FSDP-style (one dimension of
each large array); with ``model=1`` (the default) everything but the batch is replicated."""

import math

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P

DATA_AXIS = 'data'
MODEL_AXIS = 'model'
MIN_SHARDED_SIZE = 2**12  # arrays with fewer elements stay replicated: splitting them saves little


def make_mesh(model: int = 1) -> jax.sharding.Mesh:
  """A (data, model) mesh over every device of every process, ``model`` devices per data slice."""
  if model < 1 or jax.device_count() % model:
    raise ValueError(f'mesh.model={model} must be a positive divisor of the '
                     f'{jax.device_count()} devices')
  return jax.make_mesh((jax.device_count() // model, model), (DATA_AXIS, MODEL_AXIS),
                       axis_types=(jax.sharding.AxisType.Auto,) * 2)


def data_size(mesh) -> int:
  return mesh.shape[DATA_AXIS]


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh) -> NamedSharding:
  """Leading (batch) dimension split over 'data' (replicated over 'model')."""
  return NamedSharding(mesh, P(DATA_AXIS))


def _model_spec(shape, model: int) -> P:
  """FSDP rule: split the largest dimension that ``model`` divides, if the array is large."""
  if model == 1 or math.prod(shape) < MIN_SHARDED_SIZE:
    return P()
  candidates = [d for d in range(len(shape)) if shape[d] % model == 0]
  if not candidates:
    return P()
  dim = max(candidates, key=lambda d: shape[d])
  return P(*([None] * dim + [MODEL_AXIS]))


def param_shardings(tree, mesh):
  """A sharding for each array of ``tree`` (parameters, optimizer state, EMA) by the FSDP rule."""
  model = mesh.shape[MODEL_AXIS]
  return jax.tree.map(lambda x: NamedSharding(mesh, _model_spec(np.shape(x), model)), tree)


def check_batch_size(global_batch: int, mesh) -> None:
  if global_batch % data_size(mesh):
    raise ValueError(f'data.batch_size={global_batch} is not divisible by the {data_size(mesh)} '
                     f'data-parallel devices of the mesh; choose a multiple of {data_size(mesh)}')


def global_batch(local_batch: dict, mesh) -> dict:
  """Host-local numpy batch -> global jax arrays sharded over 'data' (multi-host safe)."""
  sharding = batch_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local_batch.items()}


def to_host(tree):
  """Fully-replicated or addressable arrays -> numpy on this host."""
  return jax.tree.map(lambda a: np.asarray(jax.device_get(a)), tree)


def local_rows(array, keep: int) -> np.ndarray:
  """This process's rows among the first ``keep`` of a global batch, as numpy.

  Of a multi-host array each process takes its shards with ``replica_id == 0``, so every row is
  taken by exactly one process.
  """
  if not isinstance(array, jax.Array) or array.is_fully_addressable:
    return np.asarray(array)[:keep]
  rows = [np.zeros((0,) + array.shape[1:], array.dtype)]
  for shard in array.addressable_shards:
    if shard.replica_id == 0:
      start = shard.index[0].start or 0
      rows.append(np.asarray(shard.data)[:max(keep - start, 0)])
  return np.concatenate(rows)


def all_rows(array, keep: int) -> np.ndarray:
  """The first ``keep`` rows of a global batch, on every process."""
  if not isinstance(array, jax.Array) or array.is_fully_addressable:
    return np.asarray(array)[:keep]
  return np.asarray(multihost_utils.process_allgather(array, tiled=True))[:keep]
