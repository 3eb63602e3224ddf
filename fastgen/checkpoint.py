"""Orbax checkpoints of the train state and the data-iterator state, behind one small class.

Layout: ``<workdir>/checkpoints/<step>/{state,data}``. Orbax writes each step to a temporary
directory and renames it when complete, so a run killed mid-save leaves no partial step behind.
A step that exists but cannot be read is moved to ``<workdir>/checkpoints_unreadable/<step>``
(never deleted, never overwritten) and the previous one is used.
"""

import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging


class CheckpointError(RuntimeError):
  """A checkpoint that does not fit this run, or no usable checkpoint."""


def _key_names(path) -> tuple[str, ...]:
  # Orbax metadata stores NamedTuples (optax states) as dicts: compare keys by name only.
  return tuple(str(getattr(k, 'key', getattr(k, 'idx', getattr(k, 'name', k)))) for k in path)


def _shape_mismatch(saved_metadata, abstract_state):
  """The first array whose saved shape differs from this run's, as a message, or None."""
  saved = {_key_names(path): leaf
           for path, leaf in jax.tree_util.tree_flatten_with_path(saved_metadata)[0]}
  for path, leaf in jax.tree_util.tree_flatten_with_path(abstract_state)[0]:
    name = jax.tree_util.keystr(path)
    saved_leaf = saved.get(_key_names(path))
    if saved_leaf is None:
      return f'array {name} of this run is not in the checkpoint'
    saved_shape = tuple(getattr(saved_leaf, 'shape', ()) or ())
    if saved_shape != tuple(leaf.shape):
      return (f'array {name} has shape {saved_shape} in the checkpoint but {tuple(leaf.shape)} '
              f'in this run')
  return None


def _manager(directory: str, side_item: str, keep: int | None = None):
  """An orbax manager of ``state`` (arrays) plus one JSON ``side_item``, keeping the newest
  ``keep`` steps (None: a reader). Handlers are given up front, not just item names, so metadata
  is readable before the first save."""
  handlers = {'state': ocp.StandardCheckpointHandler(), side_item: ocp.JsonCheckpointHandler()}
  options = None if keep is None else ocp.CheckpointManagerOptions(
      preservation_policy=ocp.checkpoint_managers.LatestN(keep),
      enable_async_checkpointing=False, create=True)
  return ocp.CheckpointManager(directory, options=options, item_handlers=handlers)


class Checkpointer:
  """Save / restore ``(state, data_state)`` pairs; keeps the newest ``keep`` steps."""

  def __init__(self, workdir: str, keep: int = 3):
    self.directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
    self.unreadable_directory = os.path.join(os.path.abspath(workdir), 'checkpoints_unreadable')
    self._keep = keep
    self._manager = _manager(self.directory, 'data', keep)

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state, data_state: dict) -> None:
    if step in self._manager.all_steps():
      return  # Already saved (e.g. the final step coincides with a periodic save).
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)), force=True)

  def _set_aside(self, step: int, reason: Exception) -> None:
    os.makedirs(self.unreadable_directory, exist_ok=True)
    target = os.path.join(self.unreadable_directory, str(step))
    suffix = 0
    while os.path.exists(target):
      suffix += 1
      target = os.path.join(self.unreadable_directory, f'{step}.{suffix}')
    if jax.process_index() == 0:
      shutil.move(os.path.join(self.directory, str(step)), target)
    logging.warning('checkpoint at step %d is unreadable (%s); moved it to %s', step,
                    f'{type(reason).__name__}: {reason}'[:300], target)
    self._manager.close()
    self._manager = _manager(self.directory, 'data', self._keep)

  def restore_latest(self, abstract_state):
    """``(step, state, data_state)`` from the newest readable checkpoint, or None if none exist.

    Raises :class:`CheckpointError` if the checkpoint's arrays do not fit ``abstract_state``
    (a workdir of a different config), or if checkpoints exist but none can be read.
    """
    tried = []
    for step in reversed(self.steps()):
      try:
        metadata = self._manager.item_metadata(step)['state']
        if metadata is None:
          raise ValueError('no array metadata')
      except Exception as e:  # pylint: disable=broad-except
        tried.append(step)
        self._set_aside(step, e)
        continue
      mismatch = _shape_mismatch(metadata, abstract_state)
      if mismatch:
        raise CheckpointError(
            f'{self.directory}/{step} was written by a different configuration: {mismatch}. '
            f'Use a new --workdir, or the config that wrote it.')
      try:
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
      except Exception as e:  # pylint: disable=broad-except
        tried.append(step)
        self._set_aside(step, e)
        continue
      return step, restored['state'], restored['data']
    if tried:
      raise CheckpointError(
          f'no usable checkpoint in {self.directory}: steps {tried} could not be read '
          f'(moved to {self.unreadable_directory}). Start a new --workdir or remove them.')
    return None

  def close(self):
    self._manager.close()


class BestCheckpointer:
  """The one state with the lowest value of a metric so far, in ``<workdir>/checkpoints_best``
  (``<step>/{state,metrics}``); the previous best is deleted only after the new one is written."""

  def __init__(self, workdir: str, key: str):
    self.directory = os.path.join(os.path.abspath(workdir), 'checkpoints_best')
    self.key = key
    self._manager = _manager(self.directory, 'metrics', keep=1)
    self._best = self._read_best()

  def _read_best(self) -> tuple[int, float] | None:
    step = self._manager.latest_step()
    if step is None:
      return None
    metrics = self._manager.restore(step, args=ocp.args.Composite(
        metrics=ocp.args.JsonRestore()))['metrics']
    return step, metrics.get(self.key, float('inf'))

  def best(self) -> tuple[int, float] | None:
    """``(step, value)`` of the kept state, or None."""
    return self._best

  def save(self, step: int, state, metrics: dict) -> None:
    if step in self._manager.all_steps():
      return  # Re-evaluated after a resume: the same state, already kept.
    metrics = {k: float(v) for k, v in metrics.items()}
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), metrics=ocp.args.JsonSave(metrics)), force=True)
    self._best = step, metrics.get(self.key, float('inf'))

  def close(self):
    self._manager.close()


def load_params(workdir: str, path=('ema', 'denoiser')):
  """Read one sub-tree (default: the EMA denoiser) of a workdir's newest checkpoint, as numpy."""
  directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
  if not os.path.isdir(directory):
    raise CheckpointError(f'no checkpoints under {workdir} (expected {directory})')
  manager = _manager(directory, 'data')
  step = manager.latest_step()
  if step is None:
    raise CheckpointError(f'no complete checkpoint under {directory}')
  # Onto one local device, whatever topology wrote it (e.g. a teacher trained on a pod).
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                        manager.item_metadata(step)['state'])
  state = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(target)))['state']
  manager.close()
  for key in path:
    if key not in state:
      raise CheckpointError(f'checkpoint {directory}/{step} has no {"/".join(path)} '
                            f'(found keys: {", ".join(state)})')
    state = state[key]
  return jax.tree.map(np.asarray, state)
