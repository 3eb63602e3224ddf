"""Measure a guided_gmm2d run against the exact guided distribution of the 2-D mixture.

  python -m fastgen.main --config=configs/guided_gmm2d.py --workdir=runs/guided_gmm2d
  python experiments/guided_gmm2d.py runs/guided_gmm2d [--w=2.0]

The reference is 20k samples of the exact guided teacher D_w (the class-conditional mixture
guided at w, labels uniform over its eight components) under a 512-step DDIM on the sampling
grid; a second such set gives the floor. Prints the Fréchet distance (of Gaussians fitted to each
sample set) of the teacher's DDIM at 16, 32 and 64 steps and of the run's student at 1, 2, 4 and
8 steps. The student samples at the config's ``objective.sample_w``: pass the same ``--w``.
"""

import argparse

import jax
import numpy as np
import scipy.linalg

from fastgen import checkpoint, configs, samplers
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


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('workdir')
  parser.add_argument('--w', type=float, default=2.0)
  args = parser.parse_args()
  experiment = experiment_lib.Experiment(configs.get_config('guided_gmm2d'))
  teacher, teacher_params = experiment.teacher, experiment.teacher_params
  reference = teacher_ddim(teacher, teacher_params, args.w, 512, jax.random.key(1))
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
