"""Faults injected into checkpoints (fastgen.checkpoint): every one either survived with nothing
lost (the previous good step restored, the bad one set aside) or refused with one clear error
that moves nothing. States are tiny trees built here, not trained."""

import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fastgen import checkpoint


def _state(seed=0, depth=2, dtype=jnp.float32):
  """A train-state-like tree: step, params of ``depth`` random layers, Adam's state."""
  keys = jax.random.split(jax.random.key(seed), depth)
  params = {f'layer{i}': {'kernel': jax.random.normal(k, (48, 48)).astype(dtype),
                          'bias': jnp.full((48,), 0.1 * seed, dtype)} for i, k in enumerate(keys)}
  return {'step': jnp.array(seed, jnp.int32), 'params': params,
          'opt_state': optax.adam(1e-3).init(params)}


def _abstract(state):
  return jax.eval_shape(lambda: state)


def _save_steps(workdir, steps=(1, 2), **state_args):
  checkpointer = checkpoint.Checkpointer(str(workdir), keep=5)
  states = {}
  for step in steps:
    states[step] = _state(seed=step, **state_args)
    checkpointer.save(step, states[step], {'position': step})
  checkpointer.close()
  return states


def _restore(workdir, abstract):
  checkpointer = checkpoint.Checkpointer(str(workdir), keep=5)
  try:
    return checkpointer.restore_latest(abstract)
  finally:
    checkpointer.close()


def _data_files(workdir, step):
  """The array data files of ``step``, largest (the random kernels) first."""
  root = workdir / 'checkpoints' / str(step) / 'state'
  files = [p for p in root.rglob('*') if p.is_file() and p.parent.name == 'd']
  return sorted(files, key=lambda p: -p.stat().st_size)


def _assert_same_tree(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _listing(workdir):
  return sorted(str(p.relative_to(workdir)) for p in workdir.rglob('*'))


# ------------------------------------------------------------------------------------- checksums


def test_checksum_sees_every_word_and_not_the_sharding():
  """A flipped bit, two swapped elements and a float's sign each change the checksum; an array
  split over 8 devices has the checksum of the same array on one."""
  x = jax.random.normal(jax.random.key(0), (64, 16))
  base = checkpoint.array_checksums({'x': x})['x']
  flipped = jax.lax.bitcast_convert_type(
      jax.lax.bitcast_convert_type(x, jnp.uint32).at[37, 5].add(1), jnp.float32)
  for changed in (flipped, x.at[jnp.array([3, 4])].set(x[jnp.array([4, 3])]), x.at[0, 0].multiply(-1.0)):
    assert checkpoint.array_checksums({'x': changed})['x'] != base
  mesh = jax.make_mesh((8,), ('data',), axis_types=(jax.sharding.AxisType.Explicit,))
  sharded = jax.device_put(x, jax.NamedSharding(mesh, jax.P('data')))
  assert len(sharded.addressable_shards) == 8
  assert checkpoint.array_checksums({'x': sharded})['x'] == base
  for dtype in (jnp.bfloat16, jnp.int8, jnp.bool_, jnp.uint32):  # every width of word
    y = (x > 0).astype(dtype)
    assert checkpoint.array_checksums({'y': y})['y'] != checkpoint.array_checksums(
        {'y': ~y if dtype == jnp.bool_ else y + 1})['y']


# --------------------------------------------------------------------- faults that are survived


def test_random_bytes_in_array_data_fall_back_to_the_previous_step(tmp_path, caplog):
  """Bytes overwritten inside a step's array data (orbax reads them without error) are caught by
  the checksums: step 1 is restored exactly, step 2 set aside, the warning names both."""
  states = _save_steps(tmp_path)
  target = _data_files(tmp_path, 2)[0]
  data = bytearray(target.read_bytes())
  middle = len(data) // 2
  data[middle:middle + 64] = np.random.default_rng(0).bytes(64)
  target.write_bytes(bytes(data))
  with caplog.at_level(logging.WARNING):
    step, state, data_state = _restore(tmp_path, _abstract(states[2]))
  assert step == 1 and data_state == {'position': 1}
  _assert_same_tree(state, states[1])
  warning = ' '.join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
  assert 'step 2' in warning and "['params']['layer" in warning and 'checksum' in warning
  assert (tmp_path / 'checkpoints_unreadable' / '2').is_dir()
  assert checkpoint.Checkpointer(str(tmp_path)).steps() == [1]


@pytest.mark.parametrize('fault', ['truncated', 'deleted'])
def test_truncated_or_deleted_array_file_falls_back(tmp_path, fault):
  states = _save_steps(tmp_path)
  target = _data_files(tmp_path, 2)[0]
  if fault == 'truncated':
    target.write_bytes(target.read_bytes()[:100])
  else:
    target.unlink()
  step, state, _ = _restore(tmp_path, _abstract(states[2]))
  assert step == 1
  _assert_same_tree(state, states[1])
  assert (tmp_path / 'checkpoints_unreadable' / '2').is_dir()


def test_resaving_a_set_aside_step_keeps_both(tmp_path):
  """After falling back to step 1, step 2 is written again; the corrupt copy stays aside."""
  states = _save_steps(tmp_path)
  _data_files(tmp_path, 2)[0].write_bytes(b'garbage')
  assert _restore(tmp_path, _abstract(states[2]))[0] == 1
  checkpointer = checkpoint.Checkpointer(str(tmp_path))
  checkpointer.save(2, states[2], {'position': 2})
  checkpointer.close()
  step, state, _ = _restore(tmp_path, _abstract(states[2]))
  assert step == 2
  _assert_same_tree(state, states[2])
  assert (tmp_path / 'checkpoints_unreadable' / '2').is_dir()


# ---------------------------------------------------------------- refusals that move nothing


@pytest.mark.parametrize('run_args, message', [
    (dict(depth=3), r"array \['opt_state'\]\[0\]\.mu\['layer2'\]\['bias'\] of this run is not "
                    r'in the checkpoint'),
    (dict(depth=1), r"array \['opt_state'\]\[0\]\['mu'\]\['layer1'\]\['bias'\] of the checkpoint "
                    r'is not in this run'),
    (dict(dtype=jnp.bfloat16), r"array \['opt_state'\]\[0\]\.mu\['layer0'\]\['bias'\] has dtype "
                               r'float32 in the checkpoint but bfloat16 in this run'),
])
def test_checkpoint_of_another_config_is_refused_and_nothing_moves(tmp_path, run_args, message):
  """Missing arrays, extra arrays (a shallower network) and another dtype are each a
  configuration error; the workdir is left as it was and still resumes with its own config."""
  states = _save_steps(tmp_path)
  before = _listing(tmp_path)
  with pytest.raises(checkpoint.CheckpointError, match='different configuration: ' + message):
    _restore(tmp_path, _abstract(_state(**run_args)))
  assert _listing(tmp_path) == before
  step, state, _ = _restore(tmp_path, _abstract(states[2]))
  assert step == 2
  _assert_same_tree(state, states[2])


def test_another_config_behind_an_unreadable_step_moves_nothing(tmp_path):
  _save_steps(tmp_path)
  _data_files(tmp_path, 2)[0].write_bytes(b'garbage')
  before = _listing(tmp_path)
  with pytest.raises(checkpoint.CheckpointError, match='different configuration'):
    _restore(tmp_path, _abstract(_state(depth=3)))
  assert _listing(tmp_path) == before


def test_no_usable_step_is_an_error_every_time_and_moves_nothing(tmp_path):
  states = _save_steps(tmp_path)
  for step in (1, 2):
    _data_files(tmp_path, step)[0].write_bytes(b'garbage')
  before = _listing(tmp_path)
  for _ in range(2):  # a second try must not start over from step 0 either
    with pytest.raises(checkpoint.CheckpointError,
                       match=r'no usable checkpoint .*step 2: .*step 1: .*Nothing was moved'):
      _restore(tmp_path, _abstract(states[2]))
    assert _listing(tmp_path) == before


def test_workdir_whose_checkpoints_were_all_set_aside_does_not_restart(tmp_path):
  states = _save_steps(tmp_path, steps=(1,))
  os.makedirs(tmp_path / 'checkpoints_unreadable')
  os.rename(tmp_path / 'checkpoints' / '1', tmp_path / 'checkpoints_unreadable' / '1')
  with pytest.raises(checkpoint.CheckpointError, match='starting from step 0 would overwrite'):
    _restore(tmp_path, _abstract(states[1]))


def test_fresh_workdir_starts_from_zero(tmp_path):
  assert _restore(tmp_path, _abstract(_state())) is None


def test_load_params_reads_and_verifies_only_the_sub_tree_asked_for(tmp_path):
  # A partial restore: every depth, the whole state and Adam's tuple of states come back leaf for
  # leaf as saved, and only the sub-tree read is checked, so a mismatch elsewhere in the step
  # (here a checksum of Adam's moment changed) blocks reading the whole state, not the params.
  state = _save_steps(tmp_path, steps=(1,))[1]
  for path in [(), ('params',), ('params', 'layer1'), ('opt_state',)]:
    expected = state
    for key in path:
      expected = expected[key]
    loaded = checkpoint.load_params(str(tmp_path), path)
    assert len(jax.tree.leaves(loaded)) == len(jax.tree.leaves(expected)), path
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(expected)):
      np.testing.assert_array_equal(a, np.asarray(b))
  with pytest.raises(checkpoint.CheckpointError,
                     match=r'has no params/layer7 \(found keys: layer0, layer1\)'):
    checkpoint.load_params(str(tmp_path), ('params', 'layer7'))

  checksums_file = tmp_path / 'checkpoints' / '1' / 'checksums' / 'metadata'
  checksums = json.loads(checksums_file.read_text())
  checksums['opt_state/0/mu/layer0/kernel'] = '0' * 16
  checksums_file.write_text(json.dumps(checksums))
  np.testing.assert_array_equal(checkpoint.load_params(str(tmp_path), ('params',))['layer0']
                                ['kernel'], state['params']['layer0']['kernel'])
  with pytest.raises(checkpoint.CheckpointError, match=r"\['opt_state'\]\[0\]\['mu'\]"):
    checkpoint.load_params(str(tmp_path), ())


def test_load_params_refuses_a_corrupt_checkpoint_naming_the_array(tmp_path):
  states = _save_steps(tmp_path, steps=(1,))
  np.testing.assert_array_equal(
      checkpoint.load_params(str(tmp_path), ('params', 'layer0'))['kernel'],
      states[1]['params']['layer0']['kernel'])
  target = _data_files(tmp_path, 1)[0]
  data = bytearray(target.read_bytes())
  data[len(data) // 2] ^= 0xFF
  target.write_bytes(bytes(data))
  with pytest.raises(checkpoint.CheckpointError, match=r"1 is unreadable: array\(s\) "
                                                       r"\['params'\]\['layer\d'\]\['kernel'\]"):
    checkpoint.load_params(str(tmp_path), ('params',))
