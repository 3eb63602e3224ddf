"""One generic training step for every rule, and the loop around it.

State is a plain pytree ``{'step', 'params', 'ema', 'opt_state'}`` whose ``params``, ``ema`` and
``opt_state`` are dicts keyed by the objective's groups. The step is jit-compiled once with the
batch split over the mesh's 'data' axis and the state split over its 'model' axis by the FSDP rule
of :func:`fastgen.sharding.param_shardings` (replicated when ``mesh.model=1``); the teacher's
params are an argument (sharded alike, never donated). Randomness is ``fold_in(key, step)``, so a
resumed run repeats an uninterrupted one bit for bit.
"""

import functools
import json
import os
import signal
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from fastgen.evaluation.evaluator import all_rows
from fastgen import (checkpoint, couplings, data, evaluate, images, logs, metrics, objectives,
                     sharding, teachers)


class NonFiniteLossError(RuntimeError):
  """A loss or gradient became NaN/inf."""


def make_optimizer(optim: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam(W) with linear warm-up to ``lr`` and optional global-norm gradient clipping."""
  schedule = optax.linear_schedule(0.0, optim.lr, max(optim.warmup_steps, 1))
  chain = [optax.clip_by_global_norm(optim.grad_clip)] if optim.grad_clip > 0 else []
  chain.append(optax.adamw(schedule, b1=optim.b1, b2=optim.b2, eps=optim.eps,
                           weight_decay=optim.weight_decay))
  return optax.chain(*chain)


def init_state(objective, optimizer, rng, example_batch, teacher_params) -> dict:
  """``params`` holds every entry ``objective.init`` returns; entries not in ``objective.groups``
  are frozen (never differentiated, no optimizer, no EMA), e.g. progressive distillation's
  previous-round student."""
  params = objective.init(rng, example_batch, teacher_params)
  return {
      'step': jnp.zeros((), jnp.int32),
      'params': params,
      'ema': {g: jax.tree.map(jnp.copy, params[g]) for g in objective.groups},
      'opt_state': {g: optimizer.init(params[g]) for g in objective.groups},
  }


def sampling_params(state) -> dict:
  """What a model samples with: EMA weights of the trained groups, frozen entries as they are."""
  return {**state['params'], **state['ema']}


def make_train_step(objective, optimizer, ema_decay: float, skip_nonfinite: bool):
  """``train_step(state, teacher_params, batch, rng) -> (state, metrics)``.

  For each group in ``objective.groups`` (in order, each seeing the groups updated before it):
  loss -> gradient w.r.t. that group only -> optax update -> that group's EMA moves toward its new
  params. A non-finite loss or gradient is reported in ``metrics['<group>/finite']``; with
  ``skip_nonfinite`` the update of that group is dropped instead of applied.

  An objective with a method ``updates(group, step) -> bool`` (jit-compatible) schedules its
  groups, e.g. two time-scale updates: where it is False the group's loss is not computed and its
  params, optimizer state and EMA stay exactly as they were (``jax.lax.cond``); its metrics then
  read 0 and ``metrics['<group>/updated']`` 0.
  """
  scheduled = hasattr(objective, 'updates')

  def train_step(state, teacher_params, batch, rng):
    rng = jax.random.fold_in(rng, state['step'])
    params, opt_state, ema = dict(state['params']), dict(state['opt_state']), dict(state['ema'])
    out = {}
    if hasattr(objective, 'refresh'):  # schedule-driven changes, e.g. a new distillation round
      params = objective.refresh(params, state['ema'], state['step'])
    for i, group in enumerate(objective.groups):
      def update(group_state, group=group, key=jax.random.fold_in(rng, i)):
        group_params, group_opt_state, group_ema = group_state
        def group_loss(p):
          return objective.loss(group, {**params, group: p}, state['ema'], teacher_params, batch,
                                key, state['step'])
        (loss, aux), grads = jax.value_and_grad(group_loss, has_aux=True)(group_params)
        updates, new_opt_state = optimizer.update(grads, group_opt_state, group_params)
        new_params = optax.apply_updates(group_params, updates)
        grad_norm = optax.global_norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        if skip_nonfinite:
          keep = lambda new, old: jnp.where(finite, new, old)
          new_params = jax.tree.map(keep, new_params, group_params)
          new_opt_state = jax.tree.map(keep, new_opt_state, group_opt_state)
        new_ema = jax.tree.map(lambda e, p: e + (1.0 - ema_decay) * (p - e), group_ema,
                               new_params)
        return (new_params, new_opt_state, new_ema), {**aux, 'grad_norm': grad_norm,
                                                      'finite': finite}

      group_state = (params[group], opt_state[group], ema[group])
      if scheduled:
        def keep_all(group_state, update=update):
          zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype),
                               jax.eval_shape(update, group_state)[1])
          return group_state, {**zeros, 'finite': jnp.array(True)}
        updated = jnp.asarray(objective.updates(group, state['step']))
        group_state, metrics = jax.lax.cond(updated, update, keep_all, group_state)
        metrics['updated'] = updated.astype(jnp.float32)
      else:
        group_state, metrics = update(group_state)
      params[group], opt_state[group], ema[group] = group_state
      out.update({f'{group}/{k}': v for k, v in metrics.items()})
    return {'step': state['step'] + 1, 'params': params, 'ema': ema, 'opt_state': opt_state}, out
  return train_step


def check_finite(step: int, step_metrics: dict, groups) -> None:
  bad = [g for g in groups if not bool(step_metrics[f'{g}/finite'])]
  if bad:
    raise NonFiniteLossError(
        f'non-finite loss or gradient at step {step} in network group(s) {", ".join(bad)}; '
        f'lower optim.lr, enable optim.grad_clip, or set --config.train.skip_nonfinite=True. '
        f'Checkpoints saved before this step are intact.')


class Experiment:
  """Everything a run needs, built from the config: mesh, data, teacher, objective, state."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str = ''):
    self.config = config
    self.mesh = sharding.make_mesh(config.mesh.model)
    jax.set_mesh(self.mesh)
    sharding.check_batch_size(config.data.batch_size, self.mesh)
    self.teacher, teacher_params = teachers.load_teacher(config.teacher)
    self.teacher_shardings = sharding.param_shardings(teacher_params, self.mesh)
    self.teacher_params = jax.device_put(teacher_params, self.teacher_shardings)
    data_config = config.data
    if data_config.name == 'couplings':  # the teacher's ODE pairs, written to disk on first use
      data_config = couplings.ensure_couplings(data_config, workdir, self.teacher,
                                               self.teacher_params, self.mesh)
    self.data = data.make_dataset(data_config, seed=config.seed,
                                  process_index=jax.process_index(),
                                  process_count=jax.process_count())
    self.objective = objectives.make_objective(config, self.teacher)
    self.optimizer = make_optimizer(config.optim)
    self.init_rng, self.train_rng, self.sample_rng = jax.random.split(jax.random.key(config.seed), 3)
    example = {'x': np.zeros((1,) + tuple(self.data.shape), np.float32),
               'label': np.zeros((1,), np.int32)}
    init = lambda rng, teacher_params: init_state(self.objective, self.optimizer, rng, example,
                                                  teacher_params)
    self.state_shardings = sharding.param_shardings(
        jax.eval_shape(init, self.init_rng, self.teacher_params), self.mesh)
    self._init = jax.jit(init, out_shardings=self.state_shardings)

  def abstract_state(self):
    return jax.eval_shape(self._init, self.init_rng, self.teacher_params)

  def initial_state(self):
    return self._init(self.init_rng, self.teacher_params)

  def sample_labels(self, num: int):
    num_classes = self.data.num_classes
    return jnp.arange(num, dtype=jnp.int32) % num_classes if num_classes else None

  @functools.cached_property
  def _samplers(self):
    """Jitted ``objective.sample``: output split over the 'data' axis, or replicated when the
    sample count does not divide over the devices."""
    return {split: jax.jit(self.objective.sample, static_argnames=('shape', 'num_steps'),
                           out_shardings=(sharding.batch_sharded(self.mesh) if split
                                          else sharding.replicated(self.mesh)))
            for split in (True, False)}

  def sample(self, params, rng, num: int, num_steps: int):
    """``num`` samples of the model in ``params`` (EMA weights) with ``num_steps`` steps."""
    sample = self._samplers[num % sharding.data_size(self.mesh) == 0]
    return sample(params, self.teacher_params, rng, self.sample_labels(num),
                  shape=(num,) + tuple(self.data.shape), num_steps=num_steps)


def _save_config(config, workdir):
  if jax.process_index() == 0:
    tmp = os.path.join(workdir, 'config.json.tmp')
    with open(tmp, 'w') as f:
      f.write(config.to_json_best_effort(indent=2))
    os.replace(tmp, os.path.join(workdir, 'config.json'))


def restore_or_init(experiment: Experiment, checkpointer: checkpoint.Checkpointer):
  """``(step, state)``: the newest readable checkpoint (data iterator restored too), else fresh."""
  restored = checkpointer.restore_latest(experiment.abstract_state())
  if restored is None:
    return 0, experiment.initial_state()
  step, state, data_state = restored
  experiment.data.set_state(data_state)
  logging.info('resumed from %s/%d', checkpointer.directory, step)
  return step, state


class _Preemption:
  """SIGTERM sets a flag; the loop saves a checkpoint and returns normally (exit code 0)."""

  def __init__(self):
    self.requested = False
    self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def restore(self):
    signal.signal(signal.SIGTERM, self._previous)


def _write_samples(experiment, state, step, workdir, logger):
  cfg = experiment.config.sample
  rng = jax.random.fold_in(experiment.sample_rng, step)
  samples = all_rows(experiment.sample(sampling_params(state), rng, cfg.grid_size,
                                       cfg.num_steps), cfg.grid_size)
  picture = images.picture(samples)
  if jax.process_index() == 0:
    os.makedirs(os.path.join(workdir, 'samples'), exist_ok=True)
    images.save_png(os.path.join(workdir, 'samples', f'step_{step:07d}.png'), picture)
  logger.write_images(step, {f'samples_{cfg.num_steps}step': picture[None]})


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Train ``config`` in ``workdir`` (resuming if it holds checkpoints); returns the final state."""
  os.makedirs(workdir, exist_ok=True)
  experiment = Experiment(config, workdir)
  train = config.train
  checkpointer = checkpoint.Checkpointer(workdir, keep=train.keep_checkpoints)
  step, state = restore_or_init(experiment, checkpointer)
  _save_config(config, workdir)
  logger = metrics.MetricLogger(workdir, step, metrics.last_wall_time(
      os.path.join(workdir, 'metrics.jsonl'), step))
  replicated = sharding.replicated(experiment.mesh)
  state_shardings = experiment.state_shardings
  train_step = jax.jit(
      make_train_step(experiment.objective, experiment.optimizer, train.ema_decay,
                      train.skip_nonfinite),
      in_shardings=(state_shardings, experiment.teacher_shardings,
                    sharding.batch_sharded(experiment.mesh), replicated),
      out_shardings=(state_shardings, replicated), donate_argnums=0)
  groups = experiment.objective.groups
  evaluator = evaluate.RunEvaluator(experiment) if config.eval.every else None
  best = checkpoint.BestCheckpointer(workdir, evaluator.primary_key) if evaluator else None
  preemption = _Preemption()
  start_step, start_time, paused = step, time.time(), 0.0
  unchecked = None  # (step, metrics) not yet checked for NaN: checked one step late, no stall.
  try:
    while step < train.num_steps:
      batch = sharding.global_batch(next(experiment.data), experiment.mesh)
      state, step_metrics = train_step(state, experiment.teacher_params, batch,
                                       experiment.train_rng)
      if unchecked:
        check_finite(*unchecked, groups)
      step += 1
      unchecked = None if train.skip_nonfinite else (step, step_metrics)
      is_last = step == train.num_steps
      record = {}
      if step % train.log_every == 0 or is_last:
        step_metrics = sharding.to_host(step_metrics)
        if unchecked:
          check_finite(step, step_metrics, groups)
          unchecked = None
        rate = (step - start_step) / max(time.time() - start_time - paused, 1e-9)
        record |= {f'train/{k}': v for k, v in step_metrics.items()
                   if not k.endswith('/finite')} | {'train/steps_per_sec': rate}
        logging.info('step %d/%d  %s  %.2f steps/s  ETA %s', step, train.num_steps,
                     '  '.join(f'{k}={float(v):.4g}' for k, v in step_metrics.items()
                               if k.endswith('loss')),
                     rate, logs.format_eta((train.num_steps - step) / max(rate, 1e-9)))
      pause_start = time.time()
      if train.sample_every and (step % train.sample_every == 0 or is_last):
        _write_samples(experiment, state, step, workdir, logger)
      if evaluator and (step % config.eval.every == 0 or is_last):
        record |= _evaluate(evaluator, best, state, step)
      paused += time.time() - pause_start  # steps/s and ETA count training time only
      if record:
        logger.write(step, record)
      if step % train.checkpoint_every == 0 or is_last or preemption.requested:
        if unchecked:
          check_finite(*unchecked, groups)
        checkpointer.save(step, state, experiment.data.get_state())
      if preemption.requested:
        logging.info('SIGTERM: saved step %d, exiting', step)
        break
  finally:
    preemption.restore()
    logger.close()
    checkpointer.close()
    if best:
      best.close()
  return state


def _evaluate(evaluator, best, state, step) -> dict:
  """Evaluate, keep the state if it is the best so far by the primary metric; the metrics."""
  start = time.time()
  results = evaluator.evaluate(sampling_params(state))
  logging.info('eval at step %d (%.1f s): %s', step, time.time() - start,
               evaluate.format_metrics(results))
  kept = best.best()
  if evaluator.is_improvement(results, kept[1] if kept else None):
    best.save(step, state, results)
  return results | {'eval/seconds': time.time() - start}


def _restore_for_inference(experiment, workdir):
  checkpointer = checkpoint.Checkpointer(workdir, keep=experiment.config.train.keep_checkpoints)
  restored = checkpointer.restore_latest(experiment.abstract_state())
  checkpointer.close()
  if restored is None:
    raise checkpoint.CheckpointError(f'no checkpoint in {workdir}: train first (--mode=train)')
  step, state, _ = restored
  return step, state


def evaluate_workdir(config, workdir: str) -> dict:
  """``--mode=eval``: metrics of the newest checkpoint (``config.eval``), printed and written to
  ``<workdir>/eval/step_<step>.json``; returns them."""
  experiment = Experiment(config, workdir)
  step, state = _restore_for_inference(experiment, workdir)
  results = evaluate.RunEvaluator(experiment).evaluate(sampling_params(state))
  if jax.process_index() == 0:
    os.makedirs(os.path.join(workdir, 'eval'), exist_ok=True)
    path = os.path.join(workdir, 'eval', f'step_{step:07d}.json')
    with open(path, 'w') as f:
      json.dump({'step': step, **results}, f, indent=2)
    print(f'step {step}: {evaluate.format_metrics(results)}\nwrote {path}')
  return results


def sample_to_workdir(config, workdir: str) -> str:
  """``--mode=sample``: ``config.sample.num_samples`` samples of the newest checkpoint's EMA
  model, written to ``<workdir>/samples/samples_<k>step.{npz,png}``; returns the npz path."""
  experiment = Experiment(config, workdir)
  step, state = _restore_for_inference(experiment, workdir)
  cfg = config.sample
  chunks, labels = [], []
  for i in range(0, cfg.num_samples, cfg.batch_size):
    num = min(cfg.batch_size, cfg.num_samples - i)
    rng = jax.random.fold_in(experiment.sample_rng, i)
    chunks.append(all_rows(experiment.sample(sampling_params(state), rng, num, cfg.num_steps),
                           num))
    chunk_labels = experiment.sample_labels(num)
    labels.append(np.zeros(num, np.int32) if chunk_labels is None else np.asarray(chunk_labels))
  samples = np.concatenate(chunks)
  out = os.path.join(workdir, 'samples')
  os.makedirs(out, exist_ok=True)
  path = os.path.join(out, f'samples_{cfg.num_steps}step.npz')
  np.savez(path, samples=samples, labels=np.concatenate(labels), step=step)
  images.save_png(path[:-4] + '.png', images.picture(samples[:cfg.grid_size]))
  logging.info('wrote %d samples of step %d to %s', len(samples), step, path)
  return path
