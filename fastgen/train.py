"""The training loop: steps, logging, samples, in-loop evaluation, checkpoints and preemption.

``train_and_evaluate(config, workdir)`` builds the run (:class:`fastgen.experiment.Experiment`),
resumes from ``workdir``'s newest checkpoint if there is one, and runs the jitted generic step
(:mod:`fastgen.step`) to ``train.num_steps``. A NaN or inf stops the run (checked one step late,
so the host never waits on the device), or with ``train.skip_nonfinite`` drops that update,
counted in ``train/<group>/skipped_updates`` and stopped after ``train.max_consecutive_skips``
in a row. SIGTERM, SIGINT or SIGHUP during training saves the step's state and returns normally.
"""

import os
import signal
import time

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from fastgen import checkpoint, evaluate, images, interrupts, logs, metrics, settings, sharding
from fastgen import experiment as experiment_lib
from fastgen import workdir as workdir_lib
from fastgen.evaluation import evaluator as evaluator_lib
from fastgen.step import NonFiniteLossError, check_finite, sampling_params


class _SkippedUpdates:
  """Updates that ``train.skip_nonfinite`` dropped, per group: counted on the device every step
  (no wait), read at logged and saved steps. Each read warns about the updates skipped since the
  last one, and raises :class:`NonFiniteLossError` once ``train.max_consecutive_skips`` updates
  of a group in a row were skipped (the run is diverging, not hitting a rare bad batch)."""

  def __init__(self, groups, limit: int):
    self.groups, self.limit = groups, limit
    zero = jnp.zeros((), jnp.int32)
    self._counts = {g: {'since_read': zero, 'in_a_row': zero, 'longest': zero} for g in groups}
    self._update = jax.jit(_count_skips)

  def update(self, step_metrics) -> None:
    self._counts = self._update(self._counts, {g: step_metrics[f'{g}/finite']
                                               for g in self.groups})

  def read(self, step: int) -> dict:
    """``{'<group>/skipped_updates': n}`` since the last read; warns and checks the limit."""
    counts = jax.device_get(self._counts)
    skipped = {g: int(c['since_read']) for g, c in counts.items()}
    for group, count in skipped.items():
      if count:
        logging.warning('step %d: skipped %d update(s) of %s since the last report: non-finite '
                        'loss or gradient (train.skip_nonfinite)', step, count, group)
      if int(counts[group]['longest']) >= self.limit:
        raise NonFiniteLossError(
            f'{int(counts[group]["longest"])} consecutive updates of {group} were skipped for '
            f'a non-finite loss or gradient, by step {step} (train.max_consecutive_skips='
            f'{self.limit}): the run diverged. Lower optim.lr or enable optim.grad_clip; '
            f'checkpoints saved before this step are intact.')
    self._counts = {g: {**c, 'since_read': jnp.zeros_like(c['since_read'])}
                    for g, c in self._counts.items()}
    return {f'{g}/skipped_updates': n for g, n in skipped.items()}


def _count_skips(counts, finite):
  out = {}
  for group, c in counts.items():
    skipped = (~finite[group]).astype(jnp.int32)
    in_a_row = (c['in_a_row'] + 1) * skipped
    out[group] = {'since_read': c['since_read'] + skipped, 'in_a_row': in_a_row,
                  'longest': jnp.maximum(c['longest'], in_a_row)}
  return out


def _write_samples(experiment, state, step, workdir, logger):
  cfg = experiment.config.sample
  rng = jax.random.fold_in(experiment.sample_rng, step)
  samples = sharding.all_rows(experiment.sample(sampling_params(state), rng, cfg.grid_size,
                                                cfg.num_steps), cfg.grid_size)
  picture = images.picture(samples)
  if jax.process_index() == 0:
    os.makedirs(os.path.join(workdir, 'samples'), exist_ok=True)
    images.save_png(os.path.join(workdir, 'samples', f'step_{step:07d}.png'), picture)
  logger.write_images(step, {f'samples_{cfg.num_steps}step': picture[None]})


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Train ``config`` in ``workdir`` (resuming if it holds checkpoints); returns the final state.

  Settings are checked and the workdir created and locked (:mod:`fastgen.workdir`) before any
  other work; every file of the workdir is read (checkpoints, the best checkpoint's metrics,
  ``metrics.jsonl``) before any is written. A workdir already at ``train.num_steps`` is left
  as it is."""
  settings.check(config)
  workdir_lib.create(workdir)
  with workdir_lib.Lock(workdir, enabled=jax.process_index() == 0):
    return _train(config, workdir)


def _train(config, workdir):
  # Read first: a damaged file is named before any slow work.
  history = metrics.read_metrics(os.path.join(workdir, 'metrics.jsonl'))
  experiment = experiment_lib.Experiment(config, workdir)
  train = config.train
  checkpointer = checkpoint.Checkpointer(workdir, keep=train.keep_checkpoints)
  step, state = experiment_lib.restore_or_init(experiment, checkpointer)
  evaluator = evaluate.RunEvaluator(experiment) if config.eval.every else None
  best = checkpoint.BestCheckpointer(workdir, evaluator.primary_key) if evaluator else None
  wall_time = metrics.last_wall_time(history, step)
  interrupts.raise_if_pending()  # a signal during start-up: nothing trained, nothing to save
  if step >= train.num_steps:
    logging.info('%s is at step %d, train.num_steps=%d: nothing to train', workdir, step,
                 train.num_steps)
    checkpointer.close()
    if best:
      best.close()
    return state
  experiment_lib.save_config(config, workdir)
  logger = metrics.MetricLogger(workdir, step, wall_time)
  train_step = experiment.train_step
  groups = experiment.objective.groups
  skipped = _SkippedUpdates(groups, train.max_consecutive_skips) if train.skip_nonfinite else None
  start_step, start_time, paused = step, time.time(), 0.0
  unchecked = None  # (step, metrics) not yet checked for NaN: checked one step late, no stall.
  with interrupts.deferred(consume=True):  # a signal: save this step's state and return
    try:
      while step < train.num_steps:
        batch = sharding.global_batch(next(experiment.data), experiment.mesh)
        state, step_metrics = train_step(state, experiment.teacher_params, batch,
                                         experiment.train_rng, experiment.trains_at(step))
        if unchecked:
          check_finite(*unchecked, groups)
        step += 1
        unchecked = None if skipped else (step, step_metrics)
        if skipped:
          skipped.update(step_metrics)
        is_last = step == train.num_steps
        stopping = interrupts.pending()  # read once: a signal after this waits one step
        saves = step % train.checkpoint_every == 0 or is_last or stopping is not None
        record = {}
        if step % train.log_every == 0 or is_last:
          step_metrics = sharding.to_host(step_metrics)
          if unchecked:
            check_finite(step, step_metrics, groups)
            unchecked = None
          if skipped:
            step_metrics |= skipped.read(step)
          rate = (step - start_step) / max(time.time() - start_time - paused, 1e-9)
          record |= _train_record(step, train.num_steps, step_metrics, rate)
        elif skipped and saves:
          skipped.read(step)  # the limit holds at every saved step, logged or not
        pause_start = time.time()
        if train.sample_every and (step % train.sample_every == 0 or is_last):
          _write_samples(experiment, state, step, workdir, logger)
        if evaluator and (step % config.eval.every == 0 or is_last):
          record |= _evaluate(evaluator, best, state, step)
        paused += time.time() - pause_start  # steps/s and ETA count training time only
        if record:
          logger.write(step, record)
        if saves:
          if unchecked:
            check_finite(*unchecked, groups)
          checkpointer.save(step, state, experiment.data.get_state())
        if stopping is not None:
          logging.info('%s: saved step %d, exiting', signal.Signals(stopping).name, step)
          break
    finally:
      logger.close()
      checkpointer.close()
      if best:
        best.close()
  return state


def _train_record(step: int, num_steps: int, host_metrics: dict, rate: float) -> dict:
  """The ``train/`` metrics of a logged step (``finite`` flags left out), also logged as one
  line with the losses, the training rate (steps/s) and the ETA."""
  logging.info('step %d/%d  %s  %.2f steps/s  ETA %s', step, num_steps,
               '  '.join(f'{k}={float(v):.4g}' for k, v in host_metrics.items()
                         if k.endswith('loss')),
               rate, logs.format_eta((num_steps - step) / max(rate, 1e-9)))
  return {f'train/{k}': v for k, v in host_metrics.items()
          if not k.endswith('/finite')} | {'train/steps_per_sec': rate}


def _evaluate(evaluator, best, state, step) -> dict:
  """Evaluate, keep the state if it is the best so far by the primary metric; the metrics."""
  start = time.time()
  try:
    results = evaluator.evaluate(sampling_params(state))
  except evaluator_lib.NonFiniteSamplesError as e:
    raise evaluator_lib.NonFiniteSamplesError(
        f'evaluation at step {step}: {e}; checkpoints saved before this step are intact') from None
  logging.info('eval at step %d (%.1f s): %s', step, time.time() - start,
               evaluate.format_metrics(results))
  kept = best.best()
  if evaluator.is_improvement(results, kept[1] if kept else None):
    best.save(step, state, results)
  return results | {'eval/seconds': time.time() - start}


