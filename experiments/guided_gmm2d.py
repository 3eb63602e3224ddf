"""Measure a guided_gmm2d run against the exact guided distribution of the 2-D mixture.

  python -m fastgen.main --config=configs/guided_gmm2d.py --workdir=runs/guided_gmm2d
  python experiments/guided_gmm2d.py runs/guided_gmm2d [--w=2.0]
  python experiments/guided_gmm2d.py --rounds [--w=2.0] [config.key=value ...]

The reference is 20k samples of the exact guided teacher D_w (the class-conditional mixture
guided at w, labels uniform over its eight components) under a 512-step DDIM on the sampling
grid; a second such set gives the floor. Prints the Fréchet distance (of Gaussians fitted to each
sample set) of the teacher's DDIM at 16, 32 and 64 steps and of the run's student at 1, 2, 4 and
8 steps. The student samples at the config's ``objective.sample_w``: pass the same ``--w``.

``--rounds`` trains the config (with any ``key=value`` overrides, values as Python literals) in
this process instead and prints, at the end of stage one and of each round, the student's FD at
its round's step count N_r and at 2 N_r (stage one: 16 and 64 steps), each beside the guided
teacher's DDIM FD at the same step count.
"""

import argparse
import ast
import dataclasses

import jax
import numpy as np
import scipy.linalg

from fastgen import checkpoint, configs, samplers, sharding
from fastgen import denoiser as denoiser_lib
from fastgen import experiment as experiment_lib
from fastgen import step as step_lib
from fastgen.objectives import progressive

NUM = 20_000


def frechet(a, b):
  """Fréchet distance between Gaussians fitted to two [N, 2] sample sets."""
  mean_a, mean_b = a.mean(0), b.mean(0)
  cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  return float(np.sum((mean_a - mean_b) ** 2) +
               np.trace(cov_a + cov_b - 2 * scipy.linalg.sqrtm(cov_a @ cov_b).real))


def teacher_ddim(teacher, teacher_params, w, num_steps, key):
  """NUM samples of the exact guided teacher's ``num_steps``-step DDIM (2 calls per step)."""
  key_label, key_z = jax.random.split(key)
  labels = jax.random.randint(key_label, (NUM,), 0, teacher.num_classes)
  sigma_at = lambda k: progressive.grid_sigma(k / num_steps)

  def step(k, x):
    sigma = sigma_at(k)
    x0_hat = denoiser_lib.guided(teacher, teacher_params, x, sigma, labels, 1.0 + w)
    return samplers.ddim_step(x, x0_hat, sigma, sigma_at(k + 1))

  noise = progressive.grid_sigma(0.0) * jax.random.normal(key_z, (NUM, 2))
  return np.asarray(jax.jit(lambda x: jax.lax.fori_loop(0, num_steps, step, x))(noise))


def measure_rounds(config, reference, w):
  """Train ``config`` here; at the end of stage one and of each round, print the student's FD
  at w with N_r and 2 N_r steps (stage one: 16 and 64) beside the teacher's DDIM at those."""
  experiment = experiment_lib.Experiment(config)
  objective = dataclasses.replace(experiment.objective, sample_w=w)
  sample = jax.jit(objective.sample, static_argnames=('shape', 'num_steps'))
  teacher_fd = lambda k: frechet(teacher_ddim(experiment.teacher, experiment.teacher_params, w, k,
                                              jax.random.key(3)), reference)
  ends = objective.round_ends
  state = experiment.initial_state()
  for step in range(ends[-1]):
    batch = sharding.global_batch(next(experiment.data), experiment.mesh)
    state, metrics = experiment.train_step(state, experiment.teacher_params, batch,
                                           experiment.train_rng)
    if step + 1 in ends:
      params = step_lib.sampling_params(state)
      round_index = ends.index(step + 1)
      steps = int(objective._student_steps(round_index))  # pylint: disable=protected-access
      fds = []
      for k in ((16, 64) if round_index == 0 else (steps, 2 * steps)):
        samples = sample(params, None, jax.random.key(0), experiment.sample_labels(NUM),
                         shape=(NUM, 2), num_steps=k)
        fds.append(f'student {k}-step {frechet(np.asarray(samples), reference):.5f} '
                   f'(teacher {teacher_fd(k):.5f})')
      print(f'step {step + 1}, round {round_index}: {", ".join(fds)}; '
            f'loss {float(metrics["student/loss"]):.4g}', flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('workdir', nargs='?')
  parser.add_argument('--w', type=float, default=2.0)
  parser.add_argument('--rounds', action='store_true')
  parser.add_argument('overrides', nargs='*', help='config.key=value, with --rounds')
  args = parser.parse_args()
  config = configs.get_config('guided_gmm2d')
  experiment = experiment_lib.Experiment(config)
  teacher, teacher_params = experiment.teacher, experiment.teacher_params
  reference = teacher_ddim(teacher, teacher_params, args.w, 512, jax.random.key(1))
  if args.rounds:
    overrides = ([args.workdir] if args.workdir else []) + args.overrides
    for override in overrides:
      key, value = override.removeprefix('config.').split('=', 1)
      *path, option = key.split('.')
      section = config
      for name in path:
        section = section[name]
      section[option] = ast.literal_eval(value)
    measure_rounds(config, reference, args.w)
    return
  floor = frechet(teacher_ddim(teacher, teacher_params, args.w, 512, jax.random.key(2)),
                  reference)
  print(f'floor (two 512-step teacher sets): {floor:.5f}')
  for num_steps in (16, 32, 64):
    samples = teacher_ddim(teacher, teacher_params, args.w, num_steps, jax.random.key(3))
    print(f'teacher DDIM-{num_steps} ({2 * num_steps} NFE): {frechet(samples, reference):.5f}')
  params = step_lib.sampling_params(checkpoint.load_params(args.workdir, ()))
  print(f'round {int(params["round"])}')
  for k in (1, 2, 4, 8):
    samples = np.asarray(experiment.sample(params, jax.random.key(0), NUM, k))
    print(f'student {k}-step: {frechet(samples, reference):.5f}')


if __name__ == '__main__':
  main()
