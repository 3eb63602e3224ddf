"""The training loop: steps, logging, samples, in-loop evaluation, checkpoints and preemption.

``train_and_evaluate(config, workdir)`` builds the run (:class:`fastgen.experiment.Experiment`),
resumes from ``workdir``'s newest checkpoint if there is one, and runs the jitted generic step
(:mod:`fastgen.step`) to ``train.num_steps``. A NaN or inf stops the run (checked one step late,
so the host never waits on the device); SIGTERM saves a checkpoint and returns normally.
"""

import os
import signal
import time

import jax
import ml_collections
from absl import logging

from fastgen import checkpoint, evaluate, images, logs, metrics, sharding
from fastgen import experiment as experiment_lib
from fastgen.step import check_finite, sampling_params


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
  samples = sharding.all_rows(experiment.sample(sampling_params(state), rng, cfg.grid_size,
                                                cfg.num_steps), cfg.grid_size)
  picture = images.picture(samples)
  if jax.process_index() == 0:
    os.makedirs(os.path.join(workdir, 'samples'), exist_ok=True)
    images.save_png(os.path.join(workdir, 'samples', f'step_{step:07d}.png'), picture)
  logger.write_images(step, {f'samples_{cfg.num_steps}step': picture[None]})


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Train ``config`` in ``workdir`` (resuming if it holds checkpoints); returns the final state."""
  os.makedirs(workdir, exist_ok=True)
  experiment = experiment_lib.Experiment(config, workdir)
  train = config.train
  checkpointer = checkpoint.Checkpointer(workdir, keep=train.keep_checkpoints)
  step, state = experiment_lib.restore_or_init(experiment, checkpointer)
  experiment_lib.save_config(config, workdir)
  logger = metrics.MetricLogger(workdir, step, metrics.last_wall_time(
      os.path.join(workdir, 'metrics.jsonl'), step))
  train_step = experiment.train_step
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
        record |= _train_record(step, train.num_steps, step_metrics, rate)
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
  results = evaluator.evaluate(sampling_params(state))
  logging.info('eval at step %d (%.1f s): %s', step, time.time() - start,
               evaluate.format_metrics(results))
  kept = best.best()
  if evaluator.is_improvement(results, kept[1] if kept else None):
    best.save(step, state, results)
  return results | {'eval/seconds': time.time() - start}


