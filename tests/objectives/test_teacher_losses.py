"""Teacher-training losses are minimised by the exact denoiser / velocity of the data."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastgen import denoiser, diffusion
from fastgen.objectives import edm, flow_matching
from fastgen.teachers import analytic


def _mixture():
  means = np.array([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]])
  covs = np.array([[[0.3, 0.1], [0.1, 0.2]], [[0.1, 0.0], [0.0, 0.6]], [[0.5, -0.2], [-0.2, 0.3]]])
  teacher = analytic.GaussianMixtureTeacher((2,), sigma_data=1.0)
  return teacher, analytic.mixture_params([0.5, 0.3, 0.2], means, covs)


@dataclasses.dataclass(frozen=True)
class Perturbed:
  """D(x, sigma) + delta * direction(x, sigma): a denoiser near the exact one."""
  exact: analytic.GaussianMixtureTeacher
  delta: float
  kind: str
  sigma_data: float = 1.0
  num_classes: int = 0

  def __call__(self, params, x, sigma, labels=None, *, train=False, rng=None):
    d = self.exact(params, x, sigma, labels)
    sigma = diffusion.expand_like(jnp.broadcast_to(sigma, x.shape[:1]), x)
    direction = {'shift': jnp.ones_like(x), 'scale': d, 'skip': x / (1 + sigma),
                 'nonlinear': jnp.tanh(x[:, ::-1])}[self.kind]
    return d + self.delta * direction

  def velocity(self, params, x_t, t, labels=None, **unused):
    return denoiser.velocity_from_denoiser(self, params, x_t, t, labels)


@pytest.mark.parametrize('kind', ['shift', 'scale', 'skip', 'nonlinear'])
def test_edm_loss_is_lowest_at_the_exact_denoiser(kind):
  teacher, params = _mixture()
  x0 = teacher.sample(params, jax.random.key(0), 200_000)
  loss = lambda d: float(jnp.mean(edm.denoising_loss(d, params, x0, None, jax.random.key(1),
                                                     p_mean=-0.4, p_std=1.4)))
  exact = loss(teacher)
  for delta in (-0.1, 0.1):
    assert loss(Perturbed(teacher, delta, kind)) > exact


@pytest.mark.parametrize('kind', ['shift', 'nonlinear'])
def test_flow_matching_loss_is_lowest_at_the_exact_velocity(kind):
  teacher, params = _mixture()
  x0 = teacher.sample(params, jax.random.key(0), 200_000)
  key_t, key_eps = jax.random.split(jax.random.key(1))
  t = diffusion.sample_flow_time(key_t, x0.shape[:1], 'uniform', 1e-5, 0.98)  # t < 1: EDM-space
  eps = jax.random.normal(key_eps, x0.shape)
  loss = lambda d: float(flow_matching.velocity_matching_loss(d, params, x0, t, eps, None))
  exact = loss(teacher)
  for delta in (-0.1, 0.1):
    assert loss(Perturbed(teacher, delta, kind)) > exact
