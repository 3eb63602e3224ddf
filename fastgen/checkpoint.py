"""Orbax checkpoints of the train state and the data-iterator state, behind one small class.

Layout: ``<workdir>/checkpoints/<step>/{state,data,checksums}``. Orbax writes each step to a
temporary directory and renames it when complete, so a run killed mid-save leaves no partial step
behind. ``checksums`` holds a 64-bit checksum of every array's bits (:func:`array_checksums`),
taken when the step is saved and compared after every restore, so bytes that changed on disk are
caught even where orbax reads them without complaint.

Restoring compares the whole saved tree (names, shapes, dtypes; missing and extra arrays alike)
with the state the run expects before reading any array: a checkpoint of another configuration
is an error that touches nothing. A step that cannot be read, or whose arrays do not match their
checksums, is skipped for the previous one; once a good step is restored, the bad newer ones are
moved to ``<workdir>/checkpoints_unreadable/<step>`` (never deleted, never overwritten). When no
step is usable, nothing is moved and :class:`CheckpointError` says what to do: a workdir that
holds checkpoints, usable or set aside, is never silently restarted from step 0.
"""

import collections.abc
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

_LISTED = 4  # problems named in one message; the rest are counted


class CheckpointError(RuntimeError):
  """A checkpoint that does not fit this run, or no usable checkpoint."""


def _key_names(path) -> tuple[str, ...]:
  # Orbax metadata stores NamedTuples (optax states) as dicts: compare keys by name only.
  return tuple(str(getattr(k, 'key', getattr(k, 'idx', getattr(k, 'name', k)))) for k in path)


def listed(problems: list[str]) -> str:
  """The first few problems joined by '; ', the rest counted."""
  more = f' (and {len(problems) - _LISTED} more)' if len(problems) > _LISTED else ''
  return '; '.join(problems[:_LISTED]) + more


def tree_mismatch(saved_metadata, abstract_state) -> list[str]:
  """Every difference between a saved tree (orbax metadata) and this run's ``abstract_state``:
  arrays of one not in the other, and arrays whose shape or dtype differ."""
  saved = {_key_names(path): (path, leaf)
           for path, leaf in jax.tree.leaves_with_path(saved_metadata)}
  expected = {_key_names(path): (path, leaf)
              for path, leaf in jax.tree.leaves_with_path(abstract_state)}
  problems = []
  for names, (path, leaf) in expected.items():
    name = jax.tree_util.keystr(path)
    if names not in saved:
      problems.append(f'array {name} of this run is not in the checkpoint')
      continue
    saved_leaf = saved[names][1]
    saved_shape = tuple(getattr(saved_leaf, 'shape', ()) or ())
    if saved_shape != tuple(leaf.shape):
      problems.append(f'array {name} has shape {saved_shape} in the checkpoint but '
                      f'{tuple(leaf.shape)} in this run')
    elif np.dtype(saved_leaf.dtype) != np.dtype(leaf.dtype):
      problems.append(f'array {name} has dtype {np.dtype(saved_leaf.dtype)} in the checkpoint '
                      f'but {np.dtype(leaf.dtype)} in this run')
  problems += [f'array {jax.tree_util.keystr(path)} of the checkpoint is not in this run'
               for names, (path, _) in saved.items() if names not in expected]
  return problems


# ---------------------------------------------------------------------------------- checksums


def _mix32(h):
  """MurmurHash3's 32-bit finalizer (Appleby 2011, ``fmix32``): every input bit flips each
  output bit with probability about 1/2."""
  h = h ^ (h >> 16)
  h = h * jnp.uint32(0x85EBCA6B)
  h = h ^ (h >> 13)
  h = h * jnp.uint32(0xC2B2AE35)
  return h ^ (h >> 16)


def _words(array) -> jax.Array:
  """The array's bit pattern as uint32 words, one per element (two, trailing, for 8-byte
  dtypes); no data is moved between devices."""
  dtype = np.dtype(array.dtype)
  if dtype == np.bool_:
    return array.astype(jnp.uint32)
  if dtype.itemsize == 8:
    return jax.lax.bitcast_convert_type(array, jnp.uint32)
  unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[dtype.itemsize]
  return jax.lax.bitcast_convert_type(array, unsigned).astype(jnp.uint32)


def _array_checksum(array) -> jax.Array:
  """``[c_0, c_1]``: c_s = sum_i fmix32(w_i xor fmix32(i * phi + s)) mod 2^32 over the words
  w_i at flat positions i, phi = 0x9E3779B9. A changed word or two swapped words change each
  sum with probability 1 - 2^-32; integer sums are exact in any order, so the value does not
  depend on how the array is sharded."""
  words = _words(array)
  position = jnp.zeros(words.shape, jnp.uint32)
  for axis in range(words.ndim):  # flat index from per-axis iotas: no reshape of sharded data
    stride = int(np.prod(words.shape[axis + 1:], dtype=np.uint64) % 2**32)
    position = position + jax.lax.broadcasted_iota(jnp.uint32, words.shape, axis) * np.uint32(
        stride)
  salted = position * jnp.uint32(0x9E3779B9)
  return jnp.stack([jnp.sum(_mix32(words ^ _mix32(salted + jnp.uint32(seed))), dtype=jnp.uint32)
                    for seed in (0, 0x632BE5AB)])


# One program per distinct array shape and dtype, not one over the whole state: the first
# checksum of sid_digits' state (2189 arrays, 29 shapes) took 33.8 s as one program, 3.0 s as
# 29 small ones (2 quiet CPU cores, compile included).
_checksum = jax.jit(_array_checksum)


def array_checksums(state) -> dict[str, str]:
  """``{'params/denoiser/...': 16 hex digits}``: :func:`_array_checksum` of every array.

  One program at a time, after the state is ready: the sum of a sharded array is an all-reduce,
  and on XLA:CPU's simulated devices one dispatched while the train step or another checksum was
  still running sometimes never gathered its participants (XLA's rendezvous aborts the process
  after 40 s: a model-axis test crashed 3 times in 8 runs under load; 20 of 20 passed after)."""
  jax.block_until_ready(state)
  sums = jax.tree.map(lambda array: _checksum(array).block_until_ready(), state)
  return {'/'.join(_key_names(path)): ''.join(f'{int(c):08x}' for c in
                                              jax.device_get(value.addressable_data(0)))
          for path, value in jax.tree.leaves_with_path(sums)}


def corrupt_arrays(state, saved_checksums: dict[str, str]) -> list[str]:
  """Names of the arrays of a restored ``state`` whose checksum differs from the saved one."""
  found = array_checksums(state)
  names = {'/'.join(_key_names(path)): jax.tree_util.keystr(path)
           for path, _ in jax.tree.leaves_with_path(state)}
  return [names[key] for key, value in found.items() if saved_checksums.get(key) != value]


# -------------------------------------------------------------------------------- checkpointers


def _manager(directory: str, side_item: str, keep: int | None = None,
             partial_reader: bool = False):
  """An orbax manager of ``state`` (arrays), its ``checksums`` and one JSON ``side_item``,
  keeping the newest ``keep`` steps (None: a reader). Handlers are given up front, not just item
  names, so metadata is readable before the first save. ``partial_reader``: the state is read
  with orbax's PyTree handler (the same files), which can read a sub-tree alone."""
  state_handler = ocp.PyTreeCheckpointHandler() if partial_reader else (
      ocp.StandardCheckpointHandler())
  handlers = {'state': state_handler, side_item: ocp.JsonCheckpointHandler(),
              'checksums': ocp.JsonCheckpointHandler()}
  options = None if keep is None else ocp.CheckpointManagerOptions(
      preservation_policy=ocp.checkpoint_managers.LatestN(keep),
      enable_async_checkpointing=False, create=True)
  return ocp.CheckpointManager(directory, options=options, item_handlers=handlers)


def _save(manager, step: int, state, side_item: str, side_value: dict) -> None:
  manager.save(step, args=ocp.args.Composite(**{
      'state': ocp.args.StandardSave(state), side_item: ocp.args.JsonSave(side_value),
      'checksums': ocp.args.JsonSave(array_checksums(state))}), force=True)


class _CorruptStep(ValueError):
  """A step whose arrays read without error but do not match their saved checksums."""


def _reason(error: Exception) -> str:
  """One line on why a step is unusable."""
  text = str(error) if isinstance(error, _CorruptStep) else f'{type(error).__name__}: {error}'
  first_line = text.strip().splitlines()[0] if text.strip() else type(error).__name__
  return first_line[:300] if isinstance(error, _CorruptStep) else first_line[:160]


def _restore_verified(manager, step: int, state_args, side_item: str | None, item_names):
  """``{'state', side_item}`` of ``step``, the state read with the orbax arguments
  ``state_args`` and its arrays checked against their checksums (a step saved before checksums
  existed is read unchecked, with a warning); ``item_names``: the step's items, from its
  metadata. Raises :class:`_CorruptStep` naming the arrays that differ."""
  has_checksums = 'checksums' in item_names
  items = {'state': state_args}
  if side_item:
    items[side_item] = ocp.args.JsonRestore()
  if has_checksums:
    items['checksums'] = ocp.args.JsonRestore()
  restored = manager.restore(step, args=ocp.args.Composite(**items))
  if not has_checksums:
    logging.warning('checkpoint %s/%d has no checksums (written by an older fastgen): its '
                    'arrays are not verified', manager.directory, step)
    return restored
  corrupt = corrupt_arrays(restored['state'], restored['checksums'])
  if corrupt:
    raise _CorruptStep(f'array(s) {listed(corrupt)} differ from the checksum taken when they '
                       f'were saved')
  return restored


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
    _save(self._manager, step, state, 'data', data_state)

  def _set_aside(self, step: int, reason: str) -> None:
    os.makedirs(self.unreadable_directory, exist_ok=True)
    target = os.path.join(self.unreadable_directory, str(step))
    suffix = 0
    while os.path.exists(target):
      suffix += 1
      target = os.path.join(self.unreadable_directory, f'{step}.{suffix}')
    if jax.process_index() == 0:
      shutil.move(os.path.join(self.directory, str(step)), target)
    logging.warning('checkpoint at step %d is unreadable or corrupt (%s); moved it to %s', step, reason,
                    target)
    self._manager.close()
    self._manager = _manager(self.directory, 'data', self._keep)

  def _refuse_fresh_start(self) -> None:
    """A workdir whose checkpoints were all set aside holds a run: never start it over."""
    if os.path.isdir(self.unreadable_directory) and os.listdir(self.unreadable_directory):
      raise CheckpointError(
          f'{self.directory} holds no checkpoint but {self.unreadable_directory} holds this '
          f'run\'s unreadable ones; starting from step 0 would overwrite its metrics. Remove '
          f'{self.unreadable_directory} to start afresh here, or use a new --workdir.')

  def restore_latest(self, abstract_state):
    """``(step, state, data_state)`` from the newest usable checkpoint, or None if the workdir
    holds none.

    Raises :class:`CheckpointError`, moving nothing, if a checkpoint's tree differs from
    ``abstract_state`` (a workdir of a different config), or if checkpoints exist but none is
    usable.
    """
    steps = self.steps()
    if not steps:
      self._refuse_fresh_start()
      return None
    failed = []  # (step, reason), newest first: set aside once an older step restores
    for step in reversed(steps):
      try:
        item_metadata = self._manager.item_metadata(step)
        metadata = item_metadata['state']
        if metadata is None:
          raise ValueError('no array metadata')
      except Exception as e:  # pylint: disable=broad-except
        failed.append((step, _reason(e)))
        continue
      mismatch = tree_mismatch(metadata, abstract_state)
      if mismatch:
        raise CheckpointError(
            f'{self.directory}/{step} was written by a different configuration: '
            f'{listed(mismatch)}. Use a new --workdir, or the config that wrote it.')
      try:
        restored = _restore_verified(self._manager, step,
                                     ocp.args.StandardRestore(abstract_state), 'data',
                                     item_metadata.keys())
      except Exception as e:  # pylint: disable=broad-except
        failed.append((step, _reason(e)))
        continue
      for bad_step, reason in failed:
        self._set_aside(bad_step, reason)
      return step, restored['state'], restored['data']
    raise CheckpointError(
        f'no usable checkpoint in {self.directory}: '
        + '; '.join(f'step {s}: {r}' for s, r in failed)
        + '. Nothing was moved; remove or move that directory to start from step 0, or use a '
          'new --workdir.')

  def close(self):
    self._manager.close()


class BestCheckpointer:
  """The one state with the lowest value of a metric so far, in ``<workdir>/checkpoints_best``
  (``<step>/{state,metrics,checksums}``); the previous best is deleted only after the new one is
  written."""

  def __init__(self, workdir: str, key: str):
    self.directory = os.path.join(os.path.abspath(workdir), 'checkpoints_best')
    self.key = key
    try:  # orbax reads the metrics of every kept step when the manager is made
      self._manager = _manager(self.directory, 'metrics', keep=1)
      self._best = self._read_best()
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(
          f'the best checkpoint\'s metrics in {self.directory} are unreadable ({_reason(e)}); '
          f'the run\'s checkpoints are not affected: move {self.directory} away and the next '
          f'evaluation keeps a new best') from None

  def _read_best(self) -> tuple[int, float] | None:
    step = self._manager.latest_step()
    if step is None:
      return None
    metrics = self._manager.restore(step, args=ocp.args.Composite(
        metrics=ocp.args.JsonRestore()))['metrics']
    return step, float(metrics.get(self.key, float('inf')))

  def best(self) -> tuple[int, float] | None:
    """``(step, value)`` of the kept state, or None."""
    return self._best

  def save(self, step: int, state, metrics: dict) -> None:
    if step in self._manager.all_steps():
      return  # Re-evaluated after a resume: the same state, already kept.
    metrics = {k: float(v) for k, v in metrics.items()}
    _save(self._manager, step, state, 'metrics', metrics)
    self._best = step, metrics.get(self.key, float('inf'))

  def close(self):
    self._manager.close()


def load_params(workdir: str, path=('ema', 'denoiser')):
  """Read one sub-tree (default: the EMA denoiser) of a workdir's newest checkpoint, as numpy,
  its arrays checked against their checksums. Only that sub-tree's arrays are read (a teacher's
  EMA is a quarter of its state: Adam's two moments and the params are left on disk)."""
  directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
  if not os.path.isdir(directory):
    raise CheckpointError(f'no checkpoints under {workdir} (expected {directory})')
  manager = _manager(directory, 'data', partial_reader=True)
  step = manager.latest_step()
  if step is None:
    raise CheckpointError(f'no complete checkpoint under {directory}')
  # Onto one local device, whatever topology wrote it (e.g. a teacher trained on a pod).
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  try:
    item_metadata = manager.item_metadata(step)
    metadata = item_metadata['state']
    node = getattr(metadata, 'tree', metadata)  # a TreeMetadata: its tree
    for key in path:
      if not isinstance(node, collections.abc.Mapping) or key not in node:
        found = ', '.join(node) if isinstance(node, collections.abc.Mapping) else 'none'
        raise CheckpointError(f'checkpoint {directory}/{step} has no {"/".join(path)} '
                              f'(found keys: {found})')
      node = node[key]
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                          node)
    for key in reversed(path):  # only this sub-tree is read
      target = {key: target}
    state = _restore_verified(manager, step, ocp.args.PyTreeRestore(
        target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
        partial_restore=True), None, item_metadata.keys())['state']
  except CheckpointError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointError(f'checkpoint {directory}/{step} is unreadable: {_reason(e)}') from e
  finally:
    manager.close()
  for key in path:
    state = state[key]
  return jax.tree.map(np.asarray, state)
