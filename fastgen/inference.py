"""``--mode=eval`` and ``--mode=sample``: what a trained run's newest checkpoint measures and
draws, with the run's own set-up (:class:`fastgen.experiment.Experiment`)."""

import json
import os

import jax
import numpy as np
from absl import logging

from fastgen import evaluate, images, interrupts, settings, sharding
from fastgen import experiment as experiment_lib
from fastgen.evaluation import evaluator as evaluator_lib
from fastgen.step import sampling_params


def evaluate_workdir(config, workdir: str) -> dict:
  """``--mode=eval``: metrics of the newest checkpoint (``config.eval``), printed and written to
  ``<workdir>/eval/step_<step>.json``; returns them."""
  settings.check(config)
  experiment = experiment_lib.Experiment(config, workdir)
  step, state = experiment_lib.restore_latest(experiment, workdir)
  interrupts.raise_if_pending()
  try:
    results = evaluate.RunEvaluator(experiment).evaluate(sampling_params(state))
  except evaluator_lib.NonFiniteSamplesError as e:
    raise evaluator_lib.NonFiniteSamplesError(f'checkpoint of step {step}: {e}') from None
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
  settings.check(config)
  experiment = experiment_lib.Experiment(config, workdir)
  step, state = experiment_lib.restore_latest(experiment, workdir)
  interrupts.raise_if_pending()
  cfg = config.sample
  chunks, labels = [], []
  for i in range(0, cfg.num_samples, cfg.batch_size):
    num = min(cfg.batch_size, cfg.num_samples - i)
    rng = jax.random.fold_in(experiment.sample_rng, i)
    chunks.append(sharding.all_rows(
        experiment.sample(sampling_params(state), rng, num, cfg.num_steps), num))
    chunk_labels = experiment.sample_labels(num)
    labels.append(np.zeros(num, np.int32) if chunk_labels is None else np.asarray(chunk_labels))
  interrupts.raise_if_pending()
  samples = np.concatenate(chunks)
  finite = np.isfinite(samples.reshape(len(samples), -1)).all(axis=1)
  if not finite.all():
    raise evaluator_lib.NonFiniteSamplesError(
        f'{int((~finite).sum())} of {len(samples)} {cfg.num_steps}-step samples of the '
        f'checkpoint of step {step} hold NaN or inf; nothing was written')
  out = os.path.join(workdir, 'samples')
  os.makedirs(out, exist_ok=True)
  path = os.path.join(out, f'samples_{cfg.num_steps}step.npz')
  with open(path + '.tmp', 'wb') as f:  # written whole, then renamed: never a partial file
    np.savez(f, samples=samples, labels=np.concatenate(labels), step=step)
  os.replace(path + '.tmp', path)
  images.save_png(path[:-4] + '.png', images.picture(samples[:cfg.grid_size]))
  logging.info('wrote %d samples of step %d to %s', len(samples), step, path)
  return path
