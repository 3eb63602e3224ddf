"""The generic step's contract (fastgen/step.py) on a fake three-group objective with scalar params.

The numbers are chosen so that every update is exact in float32 (SGD with momentum 0.5 and
step 0.5, EMA decay 0.75), so the checks are equalities, not tolerances.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from fastgen import step as step_lib
from fastgen.objectives import base

DECAY = 0.75
OPTIMIZER = optax.chain(optax.trace(decay=0.5), optax.scale(-0.5))  # momentum SGD, exact here


@dataclasses.dataclass(frozen=True)
class ThreeGroups(base.Objective):
  """Group g's loss is 0.5 (g - target_g)^2 with a target made of the other entries, so the
  gradient is g - target_g; its metrics record what it saw. set_frozen writes the step into the
  frozen entry 'clock'; 'constant' (2, the loss's factor constant / 2) is one nothing touches."""
  groups = ('a', 'b', 'c')
  network_group = 'c'

  def init(self, rng, batch, teacher_params):
    del rng, batch, teacher_params
    return {'a': jnp.float32(1.0), 'b': jnp.float32(3.0), 'c': jnp.float32(-1.0),
            'clock': jnp.float32(-1.0), 'constant': jnp.float32(2.0)}

  def loss(self, group, params, ema_params, teacher_params, batch, rng, step):
    del teacher_params, batch, step
    target = {'a': params['b'], 'b': params['a'], 'c': params['a'] + params['b']}[group]
    loss = 0.5 * (params[group] - target) ** 2 * (0.5 * params['constant'])  # factor 1
    return loss, {'loss': loss, 'seen_a': params['a'], 'seen_b': params['b'],
                  'seen_clock': params['clock'], 'seen_ema_a': ema_params['a'],
                  'rng': jax.random.key_data(rng)}

  def sample(self, params, teacher_params, rng, labels, shape, num_steps):
    del teacher_params, rng, labels, num_steps
    return jnp.broadcast_to(params['c'], shape)

  def set_frozen(self, params, ema_params, step):
    del ema_params
    return {**params, 'clock': step.astype(jnp.float32)}


@dataclasses.dataclass(frozen=True)
class EveryOtherC(ThreeGroups):
  """Group 'c' trains at even steps only."""

  def trains(self, group, step):
    return (group != 'c') | (step % 2 == 0)


def _state(objective):
  return step_lib.init_state(objective, OPTIMIZER, jax.random.key(0), {}, None)


@functools.cache  # one compilation per argument set for the whole file
def _step(objective, skip_nonfinite=False):
  return jax.jit(step_lib.make_train_step(objective, OPTIMIZER, DECAY, skip_nonfinite))


def _same(a, b):
  pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
  return all(np.array_equal(x, y, equal_nan=True) for x, y in pairs)


def test_groups_update_in_order_each_seeing_the_ones_before():
  state, metrics = _step(ThreeGroups())(_state(ThreeGroups()), None, {}, jax.random.key(1))
  # a: gradient 1 - 3 = -2 -> a = 1 + 0.5 * 2 = 2, seeing the old b.
  assert (float(metrics['a/seen_a']), float(metrics['a/seen_b'])) == (1.0, 3.0)
  # b sees the new a: gradient 3 - 2 = 1 -> b = 2.5.
  assert (float(metrics['b/seen_a']), float(metrics['b/seen_b'])) == (2.0, 3.0)
  # c sees both new: gradient -1 - 4.5 = -5.5 -> c = 1.75.
  assert (float(metrics['c/seen_a']), float(metrics['c/seen_b'])) == (2.0, 2.5)
  assert {g: float(state['params'][g]) for g in 'abc'} == {'a': 2.0, 'b': 2.5, 'c': 1.75}
  # every loss sees the EMA as it was at the start of the step
  assert float(metrics['c/seen_ema_a']) == 1.0
  assert {k: float(metrics[f'{k}/grad_norm']) for k in 'abc'} == {'a': 2.0, 'b': 1.0, 'c': 5.5}
  assert int(state['step']) == 1


@dataclasses.dataclass(frozen=True)
class FasterB(ThreeGroups):
  """Group 'b' at 4 times the optimizer's learning rate."""

  def learning_rate_multiplier(self, group):
    return 4.0 if group == 'b' else 1.0


def test_learning_rate_multiplier_scales_that_groups_updates_only():
  state, metrics = _step(FasterB())(_state(FasterB()), None, {}, jax.random.key(1))
  # a as in the plain step (a = 2); b: gradient 3 - 2 = 1, update -0.5 * 4 -> b = 1; c sees
  # both: gradient -1 - 3 = -4 -> c = 1.
  assert {g: float(state['params'][g]) for g in 'abc'} == {'a': 2.0, 'b': 1.0, 'c': 1.0}
  # the optimizer state (momentum) is the unscaled one: b's trace holds its gradient 1
  assert float(metrics['b/grad_norm']) == 1.0
  assert float(jax.tree.leaves(state['opt_state']['b'])[0]) == 1.0


def test_ema_is_exactly_e_plus_one_minus_decay_times_p_minus_e():
  objective = ThreeGroups()
  state = _state(objective)
  train_step = _step(objective)
  for _ in range(3):
    new, _ = train_step(state, None, {}, jax.random.key(1))
    for g in objective.groups:
      e, p = np.float32(state['ema'][g]), np.float32(new['params'][g])
      assert np.float32(new['ema'][g]) == e + np.float32(1 - DECAY) * (p - e), g
    state = new


def test_frozen_entries_are_untouched_and_set_frozen_runs_first():
  objective = ThreeGroups()
  state = _state(objective)
  assert set(state['ema']) == set(state['opt_state']) == set('abc')  # frozen: no EMA, optimizer
  train_step = _step(objective)
  for step in range(3):
    state, metrics = train_step(state, None, {}, jax.random.key(1))
    assert all(float(metrics[f'{g}/seen_clock']) == step for g in 'abc')  # before any group
    assert float(state['params']['clock']) == step
    assert float(state['params']['constant']) == 2.0


def test_each_group_gets_its_own_key_folded_with_step_and_group_index():
  objective = ThreeGroups()
  rng = jax.random.key(1)
  state, _ = _step(objective)(_state(objective), None, {}, rng)
  _, metrics = _step(objective)(state, None, {}, rng)
  for i, g in enumerate(objective.groups):
    expected = jax.random.fold_in(jax.random.fold_in(rng, 1), i)
    np.testing.assert_array_equal(metrics[f'{g}/rng'], jax.random.key_data(expected))


# The schedule traced with a lax.cond, which skips the group's computation (accelerators), or
# computed and discarded (the CPU when traced), or evaluated on the host and passed as the static
# ``trains`` (the CPU trainer: one program per pattern): the same states every way.
@pytest.mark.parametrize('form', ['conditional', 'where', 'host'])
def test_update_schedule_skips_a_group_exactly_and_only_when_overridden(form):
  assert not ThreeGroups.has_update_schedule and EveryOtherC.has_update_schedule
  plain = jax.make_jaxpr(step_lib.make_train_step(ThreeGroups(), OPTIMIZER, DECAY, False))(
      _state(ThreeGroups()), None, {}, jax.random.key(1))
  assert 'cond' not in str(plain)  # rules without a schedule: no conditional in the step

  objective = EveryOtherC()
  conditional = form == 'conditional'
  make = step_lib.make_train_step(objective, OPTIMIZER, DECAY, False, conditional)
  host_trains = lambda step: tuple(bool(objective.trains(g, step)) for g in objective.groups)
  trains_at = host_trains if form == 'host' else lambda step: None
  scheduled = jax.make_jaxpr(functools.partial(make, trains=trains_at(0)))(
      _state(objective), None, {}, jax.random.key(1))
  assert ('cond' in str(scheduled)) == conditional
  state = _state(objective)
  train_step = jax.jit(make, static_argnames='trains')
  for step in range(4):
    new, metrics = train_step(state, None, {}, jax.random.key(1), trains=trains_at(step))
    kept = {part: _same(state[part]['c'], new[part]['c']) for part in ('params', 'opt_state',
                                                                        'ema')}
    assert kept == dict.fromkeys(kept, step % 2 == 1), (step, kept)
    assert float(metrics['c/updated']) == (step % 2 == 0) and float(metrics['a/updated']) == 1
    if step % 2:
      assert float(metrics['c/loss']) == 0 and bool(metrics['c/finite'])
    assert not _same(state['params']['a'], new['params']['a'])
    state = new
  if form == 'host':  # the skipped group is not in the odd steps' program at all
    odd = jax.make_jaxpr(functools.partial(make, trains=host_trains(1)))(
        _state(objective), None, {}, jax.random.key(1))
    assert len(str(odd)) < 0.8 * len(str(scheduled))


def test_a_non_finite_update_is_reported_and_with_skip_nonfinite_dropped():
  objective = ThreeGroups()
  state = _state(objective)
  state['params'] = {**state['params'], 'constant': jnp.float32(np.nan)}
  new, metrics = _step(objective)(state, None, {}, jax.random.key(1))
  assert not any(bool(metrics[f'{g}/finite']) for g in 'abc')
  assert not np.isfinite(float(new['params']['a']))
  new, metrics = _step(objective, skip_nonfinite=True)(state, None, {}, jax.random.key(1))
  assert not any(bool(metrics[f'{g}/finite']) for g in 'abc')
  assert _same(new['params'], {**state['params'], 'clock': jnp.float32(0.0)})
  assert _same(new['opt_state'], state['opt_state'])
  assert _same(new['ema'], state['ema'])  # EMA toward unchanged params equal to it: unchanged


def test_learning_rate_warms_up_then_decays_to_zero_in_each_segment_of_decay_ends():
  optim = ml_collections.ConfigDict(dict(lr=2.0, warmup_steps=4, decay_ends=()))
  constant = step_lib.learning_rate(optim)
  np.testing.assert_allclose([constant(s) for s in (0, 2, 4, 100)], [0.0, 1.0, 2.0, 2.0])
  optim.decay_ends = (8, 12, 16)
  annealed = step_lib.learning_rate(optim)
  # Segments [0, 8), [8, 12), [12, 16): lr (end - step) / length, times the warm-up; 0 after 16.
  np.testing.assert_allclose([annealed(s) for s in (2, 4, 6, 8, 10, 11, 12, 14, 16, 20)],
                             [0.75, 1.0, 0.5, 2.0, 1.0, 0.5, 2.0, 1.0, 0.0, 0.0])
  optim.decay_ends = (8, 8)
  with pytest.raises(ValueError, match='optim.decay_ends'):
    step_lib.learning_rate(optim)


def test_decay_per_round_follows_the_objectives_round_ends():
  optim = ml_collections.ConfigDict(dict(lr=2.0, warmup_steps=0, decay_ends=(),
                                         decay_per_round=True))
  per_round = step_lib.learning_rate(optim, round_ends=(8, 12, 16))
  optim_ends = ml_collections.ConfigDict(dict(lr=2.0, warmup_steps=0, decay_ends=(8, 12, 16)))
  explicit = step_lib.learning_rate(optim_ends)
  np.testing.assert_array_equal([per_round(s) for s in range(20)],
                                [explicit(s) for s in range(20)])
  with pytest.raises(ValueError, match='decay_per_round.*has none'):
    step_lib.learning_rate(optim)  # a rule without rounds
  optim.decay_ends = (8,)
  with pytest.raises(ValueError, match='decay_per_round.*decay_ends'):
    step_lib.learning_rate(optim, round_ends=(8, 12))


def test_restart_per_round_starts_adam_afresh_at_each_rounds_first_update():
  optim = ml_collections.ConfigDict(dict(lr=0.1, warmup_steps=0, b1=0.9, b2=0.999, eps=1e-8,
                                         weight_decay=0.0, grad_clip=0.0, decay_ends=(),
                                         decay_per_round=False, restart_per_round=True))
  restarting = step_lib.make_optimizer(optim, round_ends=(3, 6))
  optim.restart_per_round = False
  plain = step_lib.make_optimizer(optim, round_ends=(3, 6))
  params = {'w': jnp.zeros(3)}
  grads = [{'w': jnp.array([1.0, -2.0, 0.5]) * (k + 1) ** 2} for k in range(6)]

  def updates(tx, grads, state):
    out = []
    for g in grads:
      u, state = tx.update(g, state, params)
      out.append(u['w'])
    return out

  restarted = updates(restarting, grads, restarting.init(params))
  # Round 0 as one Adam, round 1 (updates 3-5) as a second Adam started from nothing; the
  # learning rate keeps counting the run's updates.
  adam = optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8)
  directions = updates(adam, grads[:3], adam.init(params)) + updates(adam, grads[3:],
                                                                      adam.init(params))
  lr = step_lib.learning_rate(optim)
  for k, (a, d) in enumerate(zip(restarted, directions)):
    np.testing.assert_allclose(a, -lr(k) * d, rtol=1e-6)
  carried = updates(plain, grads, plain.init(params))
  np.testing.assert_allclose(restarted[:3], carried[:3], rtol=1e-6)
  assert not np.allclose(restarted[3], carried[3], rtol=1e-3)  # the restart is not a no-op
  optim.restart_per_round = True
  with pytest.raises(ValueError, match='restart_per_round.*has none'):
    step_lib.make_optimizer(optim)  # a rule without rounds
