"""Endless seeded 2-D point sets: ``gmm2d``, ``checkerboard``, ``moons``, ``rings``.

Global batch ``n`` is drawn from ``np.random.default_rng([seed, n])`` and each host keeps its rows
(:class:`fastgen.data.stream.StepStream`). Every set is made of modes (mixture components,
squares, moons, rings); with ``config.conditional=True`` the mode index is the label and
``num_classes`` the number of modes, else labels are 0 and ``num_classes`` is 0. Per-coordinate
standard deviations lie between 0.75 and 1.3.
"""

import numpy as np

from fastgen.data import stream


def gmm2d_mixture() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The gmm2d distribution ``(weights [8], means [8, 2], covs [8, 2, 2])``.

  Eight Gaussians on a circle of radius 1.35 at angles ``2 pi k / 8``, weights
  ``(4, 1, 3, 2, 4, 1, 3, 2) / 20`` (opposite components share a weight, so the mean is 0). Even
  components are stretched along the circle (std 0.35 tangential, 0.1 radial), odd ones across it
  (0.1 tangential, 0.3 radial). Data std is (1.03, 0.94) per coordinate.
  """
  angles = 2 * np.pi * np.arange(8) / 8
  weights = np.array([4, 1, 3, 2, 4, 1, 3, 2], np.float64) / 20
  means = 1.35 * np.stack([np.cos(angles), np.sin(angles)], axis=-1)
  even = np.arange(8) % 2 == 0
  radial_std = np.where(even, 0.1, 0.3)
  tangential_std = np.where(even, 0.35, 0.1)
  rotations = np.stack([np.stack([np.cos(angles), -np.sin(angles)], axis=-1),
                        np.stack([np.sin(angles), np.cos(angles)], axis=-1)], axis=-2)
  scales = np.stack([np.diag([r**2, t**2]) for r, t in zip(radial_std, tangential_std)])
  covs = rotations @ scales @ rotations.transpose(0, 2, 1)
  return weights, means, covs


def sample_gmm2d(rng: np.random.Generator, num: int):
  """``num`` points of :func:`gmm2d_mixture` and their component indices."""
  weights, means, covs = gmm2d_mixture()
  component = rng.choice(len(weights), size=num, p=weights)
  noise = rng.standard_normal((num, 2))
  x = means[component] + np.einsum('nij,nj->ni', np.linalg.cholesky(covs)[component], noise)
  return x, component


def sample_checkerboard(rng: np.random.Generator, num: int):
  """Uniform on the 8 dark squares of a 4x4 board of unit squares on [-2, 2]^2 (std 1.15)."""
  cells = np.array([(i, j) for i in range(4) for j in range(4) if (i + j) % 2 == 0])
  square = rng.integers(len(cells), size=num)
  x = cells[square] - 2.0 + rng.uniform(size=(num, 2))
  return x, square


def sample_moons(rng: np.random.Generator, num: int):
  """Two interleaved half circles (sklearn's make_moons), noise std 0.05, centred, scaled by 1.5."""
  moon = rng.integers(2, size=num)
  t = rng.uniform(0, np.pi, size=num)
  upper = np.stack([np.cos(t), np.sin(t)], axis=-1)
  lower = np.stack([1 - np.cos(t), 0.5 - np.sin(t)], axis=-1)
  x = np.where(moon[:, None] == 0, upper, lower) + 0.05 * rng.standard_normal((num, 2))
  return 1.5 * (x - np.array([0.5, 0.25])), moon


def sample_rings(rng: np.random.Generator, num: int):
  """Four concentric circles of radii 0.5, 1, 1.5, 2 in equal shares, radial noise std 0.05."""
  ring = rng.integers(4, size=num)
  radius = 0.5 * (ring + 1) + 0.05 * rng.standard_normal(num)
  angle = rng.uniform(0, 2 * np.pi, size=num)
  return radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=-1), ring


# name -> (sampler (rng, num) -> (x [num, 2], mode [num]), number of modes)
SAMPLERS = {
    'gmm2d': (sample_gmm2d, 8),
    'checkerboard': (sample_checkerboard, 8),
    'moons': (sample_moons, 2),
    'rings': (sample_rings, 4),
}


class Toy2D(stream.StepStream):
  """The 2-D set ``config.name``; keys: ``batch_size``, ``conditional`` (default False)."""

  shape = (2,)

  def __init__(self, config, seed: int, process_index: int, process_count: int):
    super().__init__(config.batch_size, process_index, process_count)
    self.sample, num_modes = SAMPLERS[config.name]
    self.conditional = config.get('conditional', False)
    self.num_classes = num_modes if self.conditional else 0
    self.seed = seed

  def batch(self, step: int) -> dict[str, np.ndarray]:
    x, mode = self.sample(np.random.default_rng([self.seed, step]), self.batch_size)
    label = mode if self.conditional else np.zeros_like(mode)
    return {'x': x[self.rows].astype(np.float32), 'label': label[self.rows].astype(np.int32)}
