"""``--mode=eval`` and ``--mode=sample``: what a trained run's newest checkpoint measures and
draws, with the run's own set-up (:class:`fastgen.experiment.Experiment`)."""

import json
import os

import jax
import numpy as np
from absl import logging

from fastgen import evaluate, images, sharding
from fastgen import experiment as experiment_lib
from fastgen.step import sampling_params


def evaluate_workdir(config, workdir: str) -> dict:
  """``--mode=eval``: metrics of the newest checkpoint (``config.eval``), printed and written to
  ``<workdir>/eval/step_<step>.json``; returns them."""
  experiment = experiment_lib.Experiment(config, workdir)
  step, state = experiment_lib.restore_latest(experiment, workdir)
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
  experiment = experiment_lib.Experiment(config, workdir)
  step, state = experiment_lib.restore_latest(experiment, workdir)
  cfg = config.sample
  chunks, labels = [], []
  for i in range(0, cfg.num_samples, cfg.batch_size):
    num = min(cfg.batch_size, cfg.num_samples - i)
    rng = jax.random.fold_in(experiment.sample_rng, i)
    chunks.append(sharding.all_rows(
        experiment.sample(sampling_params(state), rng, num, cfg.num_steps), num))
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
