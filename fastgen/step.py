"""The one generic training step every rule shares: optimizer, state, per-group update, EMA.

State is a plain pytree ``{'step', 'params', 'ema', 'opt_state'}`` whose ``ema`` and
``opt_state`` are dicts keyed by the objective's groups and whose ``params`` also holds the
objective's frozen entries. The step is a pure function (jit-compiled by
:class:`fastgen.experiment.Experiment`); the teacher's params are an argument, never captured.
Randomness is ``fold_in(key, step)`` and then ``fold_in(., group index)``, so a resumed run
repeats an uninterrupted one bit for bit.
"""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax


class NonFiniteLossError(RuntimeError):
  """A loss or gradient became NaN/inf."""


def learning_rate(optim: ml_collections.ConfigDict, round_ends: tuple[int, ...] = ()):
  """The learning rate at a step: linear warm-up to ``lr``, then constant, or, with
  ``optim.decay_ends`` = (e_1, e_2, ...), decaying linearly to 0 over each segment
  [e_(i-1), e_i) (e_0 = 0) and back at ``lr`` at each e_i (progressive distillation's per-round
  annealing, Salimans & Ho 2022); 0 from the last end on. ``optim.decay_per_round``: the ends
  are the objective's ``round_ends``, so they follow its round lengths however they are set."""
  warmup = optax.linear_schedule(0.0, optim.lr, max(optim.warmup_steps, 1))
  ends = tuple(optim.get('decay_ends', ()))
  if optim.get('decay_per_round', False):
    if ends or not round_ends:
      raise ValueError('optim.decay_per_round=True decays over the objective\'s rounds: '
                       + ('leave optim.decay_ends empty' if ends else 'this rule has none'))
    ends = tuple(round_ends)
  if not ends:
    return warmup
  if any(b <= a for a, b in zip((0,) + ends, ends)):
    raise ValueError(f'optim.decay_ends={ends} must be positive and increasing')
  ends = jnp.asarray(ends, jnp.float32)
  starts = jnp.concatenate([jnp.zeros((1,)), ends[:-1]])

  def schedule(step):
    segment = jnp.minimum(jnp.searchsorted(ends, step, side='right'), len(ends) - 1)
    left = (ends[segment] - step) / (ends[segment] - starts[segment])
    return warmup(step) * jnp.clip(left, 0.0, 1.0)
  return schedule


class RestartState(NamedTuple):
  inner: Any
  count: jax.Array  # updates applied so far


def restart_at(inner: optax.GradientTransformation,
               starts: tuple[int, ...]) -> optax.GradientTransformation:
  """``inner`` with its state re-initialised before the update numbered by each of ``starts``
  (0-based, counting applied updates like optax's schedules): a fresh optimizer per round."""
  starts = jnp.asarray(starts, jnp.int32)

  def init(params):
    return RestartState(inner.init(params), jnp.zeros((), jnp.int32))

  def update(updates, state, params=None):
    restart = jnp.any(state.count == starts)
    inner_state = jax.tree.map(lambda fresh, old: jnp.where(restart, fresh, old),
                               inner.init(updates), state.inner)
    updates, inner_state = inner.update(updates, inner_state, params)
    return updates, RestartState(inner_state, state.count + 1)
  return optax.GradientTransformation(init, update)


def make_optimizer(optim: ml_collections.ConfigDict,
                   round_ends: tuple[int, ...] = ()) -> optax.GradientTransformation:
  """Adam(W) at :func:`learning_rate` and optional global-norm gradient clipping.
  ``optim.restart_per_round``: Adam's moments and bias correction start afresh at each of the
  objective's rounds (progressive distillation's official loop builds a new optimizer per
  round); the learning-rate schedule keeps counting the run's steps."""
  schedule = learning_rate(optim, round_ends)
  chain = [optax.clip_by_global_norm(optim.grad_clip)] if optim.grad_clip > 0 else []
  if not optim.get('restart_per_round', False):
    chain.append(optax.adamw(schedule, b1=optim.b1, b2=optim.b2, eps=optim.eps,
                             weight_decay=optim.weight_decay))
    return optax.chain(*chain)
  if not round_ends:
    raise ValueError('optim.restart_per_round=True restarts Adam at the objective\'s rounds: '
                     'this rule has none')
  adam = optax.scale_by_adam(b1=optim.b1, b2=optim.b2, eps=optim.eps)
  chain += [restart_at(adam, tuple(round_ends[:-1])),
            optax.add_decayed_weights(optim.weight_decay), optax.scale_by_learning_rate(schedule)]
  return optax.chain(*chain)


def init_state(objective, optimizer, rng, example_batch, teacher_params) -> dict:
  """``params`` holds every entry ``objective.init`` returns; entries not in ``objective.groups``
  are frozen (never differentiated, no optimizer, no EMA), e.g. progressive distillation's
  previous-round student."""
  return state_from_params(objective.init(rng, example_batch, teacher_params), objective.groups,
                           optimizer)


def state_from_params(params, groups, optimizer) -> dict:
  """The state at step 0 of a run whose params are ``params``: each group's EMA equal to its
  params, a fresh optimizer state per group."""
  return {
      'step': jnp.zeros((), jnp.int32),
      'params': params,
      'ema': {g: jax.tree.map(jnp.copy, params[g]) for g in groups},
      'opt_state': {g: optimizer.init(params[g]) for g in groups},
  }


def sampling_params(state) -> dict:
  """What a model samples with: EMA weights of the trained groups, frozen entries as they are."""
  return {**state['params'], **state['ema']}


def ema_update(ema, params, decay: float):
  """e <- e + (1 - decay) (p - e), i.e. decay e + (1 - decay) p, leaf by leaf."""
  return jax.tree.map(lambda e, p: e + (1.0 - decay) * (p - e), ema, params)


def update_group(objective, optimizer, ema_decay: float, skip_nonfinite: bool, group: str,
                 params, ema_params, teacher_params, batch, rng, step, group_state):
  """One group's update: loss -> gradient w.r.t. ``params[group]`` only -> optax (its updates
  scaled by ``objective.learning_rate_multiplier(group)``) -> EMA.

  ``group_state`` is ``(group_params, group_opt_state, group_ema)``; ``params`` holds every entry
  as the step has it so far (earlier groups already updated), ``ema_params`` the EMA at the
  start of the step. Returns the new ``group_state`` and the group's metrics, with ``grad_norm``
  and ``finite`` (loss and gradient finite) added. With ``skip_nonfinite`` a non-finite update
  keeps the old params and optimizer state (the EMA then moves toward the old params).
  """
  group_params, group_opt_state, group_ema = group_state

  def group_loss(p):
    return objective.loss(group, {**params, group: p}, ema_params, teacher_params, batch, rng,
                          step)

  (loss, aux), grads = jax.value_and_grad(group_loss, has_aux=True)(group_params)
  updates, new_opt_state = optimizer.update(grads, group_opt_state, group_params)
  multiplier = objective.learning_rate_multiplier(group)
  if multiplier != 1.0:
    updates = jax.tree.map(lambda u: multiplier * u, updates)
  new_params = optax.apply_updates(group_params, updates)
  grad_norm = optax.tree.norm(grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  if skip_nonfinite:
    keep = lambda new, old: jnp.where(finite, new, old)
    new_params = jax.tree.map(keep, new_params, group_params)
    new_opt_state = jax.tree.map(keep, new_opt_state, group_opt_state)
  new_ema = ema_update(group_ema, new_params, ema_decay)
  return (new_params, new_opt_state, new_ema), {**aux, 'grad_norm': grad_norm, 'finite': finite}


def scheduled_update(update, trains, group_state, conditional: bool = True):
  """``update(group_state)`` where ``trains``, else ``group_state`` untouched: its metrics then
  read 0, ``finite`` True, and ``updated`` says which branch ran. A Python bool ``trains`` (known
  when the step is traced) picks the branch in the program itself. A traced one: with
  ``conditional`` a ``lax.cond``, which skips the update's computation; else the update is
  computed at every step and its result selected with ``where`` (bit-identical states). XLA:CPU
  runs the networks inside a conditional branch several times slower (the dmd_digits step: 3.80 s
  against 0.47 s with ``where``, docs/performance.md), so there computing a skipped update is the
  cheaper form of the traced schedule."""
  def skipped(metrics):
    return {**jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), metrics),
            'finite': jnp.array(True)}

  if isinstance(trains, bool):
    if trains:
      group_state, metrics = update(group_state)
    else:
      metrics = skipped(jax.eval_shape(update, group_state)[1])
    return group_state, {**metrics, 'updated': jnp.float32(trains)}
  trains = jnp.asarray(trains)
  if conditional:
    keep = lambda state: (state, skipped(jax.eval_shape(update, state)[1]))
    group_state, metrics = jax.lax.cond(trains, update, keep, group_state)
  else:
    new_state, new_metrics = update(group_state)
    pick = lambda new, old: jnp.where(trains, new, old)
    group_state = jax.tree.map(pick, new_state, group_state)
    metrics = jax.tree.map(pick, new_metrics, skipped(new_metrics))
  return group_state, {**metrics, 'updated': trains.astype(jnp.float32)}


def make_train_step(objective, optimizer, ema_decay: float, skip_nonfinite: bool,
                    conditional_updates: bool = True):
  """``train_step(state, teacher_params, batch, rng, trains=None) -> (state, metrics)``.

  First ``objective.set_frozen`` sets the frozen entries for this step. Then for each group in
  ``objective.groups`` (in order, each seeing the groups updated before it):
  :func:`update_group`. A non-finite loss or gradient is reported in
  ``metrics['<group>/finite']``; with ``skip_nonfinite`` the update of that group is dropped
  instead of applied.

  A rule that overrides ``objective.trains(group, step)`` (``has_update_schedule``) has each
  group's update under :func:`scheduled_update`: where it is False its params, optimizer state
  and EMA stay exactly as they were. ``trains``, a tuple of Python bools (one per group: the
  schedule evaluated on the host at this step; static under ``jax.jit``, so one program per
  pattern), leaves a skipped group out of the program; ``None`` traces the schedule, with
  ``conditional_updates`` as a ``lax.cond`` (its loss then not computed) or else computed and
  discarded. Other rules' step has no conditional.
  """
  def train_step(state, teacher_params, batch, rng, trains=None):
    step = state['step']
    rng = jax.random.fold_in(rng, step)
    params = objective.set_frozen(dict(state['params']), state['ema'], step)
    opt_state, ema = dict(state['opt_state']), dict(state['ema'])
    out = {}
    for i, group in enumerate(objective.groups):
      update = functools.partial(update_group, objective, optimizer, ema_decay, skip_nonfinite,
                                 group, params, state['ema'], teacher_params, batch,
                                 jax.random.fold_in(rng, i), step)
      group_state = (params[group], opt_state[group], ema[group])
      if objective.has_update_schedule:
        group_trains = objective.trains(group, step) if trains is None else trains[i]
        group_state, metrics = scheduled_update(update, group_trains, group_state,
                                                conditional_updates)
      else:
        group_state, metrics = update(group_state)
      params = {**params, group: group_state[0]}
      opt_state[group], ema[group] = group_state[1:]
      out.update({f'{group}/{k}': v for k, v in metrics.items()})
    return {'step': step + 1, 'params': params, 'ema': ema, 'opt_state': opt_state}, out
  return train_step


def check_finite(step: int, step_metrics: dict, groups) -> None:
  """Raise :class:`NonFiniteLossError` naming the groups whose loss or gradient was not finite."""
  bad = [g for g in groups if not bool(step_metrics[f'{g}/finite'])]
  if bad:
    raise NonFiniteLossError(
        f'non-finite loss or gradient at step {step} in network group(s) {", ".join(bad)}; '
        f'lower optim.lr, enable optim.grad_clip, or set --config.train.skip_nonfinite=True. '
        f'Checkpoints saved before this step are intact.')
