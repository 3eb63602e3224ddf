"""How closely a guided_digits student follows its label and guidance weight: FID, accuracy.

  python -m fastgen.main --config=configs/guided_digits.py --workdir=runs/guided_digits
  python experiments/guided_digits.py runs/guided_digits [--ws 0 0.5 1 2] [--num=2000] [--seed=0]

FID alone cannot tell a better guided student from a less guided one: guidance moves samples
away from the data, so a student that ignores w can score a lower FID than its guided teacher. This
script also measures adherence. For each guidance weight w, the guided teacher (Heun, 18 steps =
35 NFE, D_w = (1 + w) D(c) - w D(null)) and the run's newest student at 1, 2 and 4 DDIM steps
each draw ``--num`` samples for the labels 0, 1, ..., 9 in turn; printed for each: FID in the
digits-classifier features against the training split (as the in-loop evaluation), the shipped
classifier's accuracy on the conditioning labels (its accuracy on real held-out digits: 99.3%)
and its mean probability of the conditioning label. ``--seed`` picks the noise: 0 is the in-loop
evaluation's (``eval.seed`` 0), so it reproduces the run's logged FIDs. Writes ``--out`` (JSON).
"""

import argparse
import dataclasses
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from fastgen import checkpoint, configs, samplers  # pylint: disable=wrong-import-position
from fastgen import experiment as experiment_lib  # pylint: disable=wrong-import-position
from fastgen.evaluation import evaluator as evaluator_lib  # pylint: disable=wrong-import-position
from fastgen.evaluation import frechet  # pylint: disable=wrong-import-position
from fastgen.step import sampling_params  # pylint: disable=wrong-import-position

STUDENT_STEPS = (1, 2, 4)
TEACHER_STEPS = 18


def measure(evaluator, draw, num: int, batch_size: int, num_classes: int, seed: int = 0) -> dict:
  """FID, accuracy and mean label probability of ``draw(rng, labels) -> [B, 8, 8, 1]``."""
  stats = frechet.FeatureStats(evaluator.extractor.dim)
  hits, probability = 0, 0.0
  for i, start in enumerate(range(0, num, batch_size)):
    labels = jnp.arange(start, start + batch_size, dtype=jnp.int32) % num_classes
    samples = draw(jax.random.fold_in(jax.random.key(seed), i), labels)
    keep = min(batch_size, num - start)
    features, logits = (np.asarray(a)[:keep]
                        for a in evaluator.extractor.features_and_logits(samples))
    labels = np.asarray(labels)[:keep]
    stats.update(features)
    hits += int((logits.argmax(-1) == labels).sum())
    probability += float(np.take_along_axis(jax.nn.softmax(logits), labels[:, None], 1).sum())
  return {'fid': frechet.frechet_distance(stats.mean, stats.cov, evaluator.mu, evaluator.sigma),
          'accuracy': hits / num, 'label_probability': probability / num}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('workdir')
  parser.add_argument('--ws', type=float, nargs='+', default=[0.0, 0.5, 1.0, 2.0])
  parser.add_argument('--num', type=int, default=2000)
  parser.add_argument('--seed', type=int, default=0, help='of the noise (the same for every row)')
  parser.add_argument('--teacher_workdir', default='', help='default: the config\'s')
  parser.add_argument('--out', default=os.path.join(REPO, 'experiments', 'results',
                                                    'guided_digits.json'))
  args = parser.parse_args()
  config = configs.get_config('guided_digits')
  if args.teacher_workdir:
    config.teacher.workdir = args.teacher_workdir
  experiment = experiment_lib.Experiment(config)
  evaluator = evaluator_lib.make_evaluator(config.eval, config.data)
  try:
    params = sampling_params(checkpoint.load_params(args.workdir, ()))
  except checkpoint.CheckpointError as e:
    raise SystemExit(f'guided_digits: {e}') from None
  teacher, teacher_params = experiment.teacher, experiment.teacher_params
  batch_size, num_classes = config.eval.batch_size, experiment.data.num_classes
  shape = (batch_size,) + tuple(experiment.data.shape)
  print(f'{args.workdir}: round {int(params["round"])}, {args.num} samples per row')
  rows = []
  for w in args.ws:
    teacher_draw = jax.jit(lambda rng, labels, w=w: samplers.sample(
        teacher, teacher_params, rng, shape, num_steps=TEACHER_STEPS, labels=labels,
        guidance_scale=1.0 + w))
    objective = dataclasses.replace(experiment.objective, sample_w=w)
    student_sample = jax.jit(objective.sample, static_argnames=('shape', 'num_steps'))
    samplers_at_w = [('teacher Heun 35 NFE', teacher_draw)] + [
        (f'student {k}-step', lambda rng, labels, k=k: student_sample(
            params, teacher_params, rng, labels, shape=shape, num_steps=k))
        for k in STUDENT_STEPS]
    for name, draw in samplers_at_w:
      row = {'w': w, 'sampler': name,
             **measure(evaluator, draw, args.num, batch_size, num_classes, args.seed)}
      print(f'w = {w:g}, {name}: FID {row["fid"]:.2f}, accuracy {row["accuracy"]:.3f}, '
            f'label probability {row["label_probability"]:.3f}', flush=True)
      rows.append(row)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump({'workdir': args.workdir, 'num_samples': args.num, 'seed': args.seed,
               'rows': rows}, f, indent=1)
  print(f'wrote {args.out}')


if __name__ == '__main__':
  main()
