"""Feature statistics and the Fréchet distance between Gaussians fitted to them.

FID (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
Equilibrium", Eq. 6) is the Fréchet (2-Wasserstein) distance between N(mu1, S1) and N(mu2, S2):

  d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)).

Statistics accumulate in float64 batch by batch (Chan, Golub & LeVeque 1979 pairwise update), so
any number of samples fits in memory, and merge across devices' rows and across hosts. Reference
statistics use EDM's ``.npz`` format (keys ``mu`` [D] and ``sigma`` [D, D]; Karras et al. 2022,
``fid.py ref``), so the published ``cifar10-32x32.npz`` works as it is.
"""

import os

import jax
import numpy as np
import scipy.linalg
from jax.experimental import multihost_utils


class FeatureStats:
  """Running count, mean and centred sum of outer products of [N, D] feature batches (float64)."""

  def __init__(self, dim: int):
    self.dim = dim
    self.count = 0
    self.mean = np.zeros(dim, np.float64)
    self.m2 = np.zeros((dim, dim), np.float64)  # sum_i (f_i - mean)(f_i - mean)^T

  def update(self, features) -> 'FeatureStats':
    """Add the rows of ``features`` [N, D]; returns ``self``."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or features.shape[1] != self.dim:
      raise ValueError(f'features must be [N, {self.dim}], got shape {features.shape}')
    if len(features):
      batch = FeatureStats(self.dim)
      batch.count = len(features)
      batch.mean = features.mean(axis=0)
      centred = features - batch.mean
      batch.m2 = centred.T @ centred
      self.merge(batch)
    return self

  def merge(self, other: 'FeatureStats') -> 'FeatureStats':
    """Pool ``other`` into ``self`` (Chan et al. 1979):
    M2 = M2_a + M2_b + delta delta^T n_a n_b / n, delta = mean_b - mean_a. Returns ``self``."""
    if other.dim != self.dim:
      raise ValueError(f'cannot merge statistics of dimension {other.dim} into {self.dim}')
    total = self.count + other.count
    if other.count == 0:
      return self
    delta = other.mean - self.mean
    self.m2 = self.m2 + other.m2 + np.outer(delta, delta) * (self.count * other.count / total)
    self.mean = self.mean + delta * (other.count / total)
    self.count = total
    return self

  @property
  def cov(self) -> np.ndarray:
    """Unbiased covariance M2 / (n - 1), as ``np.cov`` and EDM's reference statistics use.

    Raises ValueError unless there are more samples than dimensions (else it is singular).
    """
    if self.count <= self.dim:
      raise ValueError(
          f'{self.count} samples are too few for a full-rank {self.dim}x{self.dim} feature '
          f'covariance: use at least {self.dim + 1} (FID is normally computed from 10k-50k)')
    return self.m2 / (self.count - 1)


def allgather_stats(stats: FeatureStats) -> FeatureStats:
  """Every process's ``stats`` merged, on every process (identity with one process).

  The sufficient statistics (count, mean, M2) travel through ``process_allgather`` as the raw
  bits of their float64 values (uint32 pairs), so nothing is rounded to float32 on the way even
  without ``jax_enable_x64``.
  """
  if jax.process_count() == 1:
    return stats
  packed = np.concatenate([[float(stats.count)], stats.mean, stats.m2.ravel()])
  gathered = np.asarray(multihost_utils.process_allgather(packed.view(np.uint32)))
  merged = FeatureStats(stats.dim)
  for row in gathered:
    values = np.ascontiguousarray(row).view(np.float64)
    part = FeatureStats(stats.dim)
    part.count = int(values[0])
    part.mean, part.m2 = values[1:1 + stats.dim], values[1 + stats.dim:].reshape(stats.m2.shape)
    merged.merge(part)
  return merged


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
  """Symmetric square root U diag(sqrt(max(lambda, 0))) U^T of a symmetric PSD matrix."""
  eigvals, eigvecs = scipy.linalg.eigh((matrix + matrix.T) / 2, driver='evd')
  return (eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))) @ eigvecs.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
  """Squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (Heusel et al., Eq. 6).

  tr((S1 S2)^(1/2)) = sum_i sqrt(lambda_i(S1^(1/2) S2 S1^(1/2))): S1 S2 is similar to that
  symmetric PSD matrix, so a symmetric eigendecomposition replaces the general ``sqrtm`` (no
  complex parts, no inverse, exact for singular covariances; ~1.5 s at D = 2048 on 2 CPU cores,
  where ``sqrtm`` takes far longer). Tiny negative results from rounding are clipped to 0.
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  dim = mu1.shape[-1]
  if not (mu1.shape == mu2.shape == (dim,) and sigma1.shape == sigma2.shape == (dim, dim)):
    raise ValueError(f'Fréchet distance needs means [D] and covariances [D, D] of one D; got '
                     f'{mu1.shape}, {sigma1.shape} and {mu2.shape}, {sigma2.shape}')
  root1 = _psd_sqrt(sigma1)
  inner = root1 @ sigma2 @ root1
  eigvals = scipy.linalg.eigvalsh((inner + inner.T) / 2)
  trace_sqrt = np.sqrt(np.clip(eigvals, 0.0, None)).sum()
  diff = mu1 - mu2
  distance = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt
  return float(max(distance, 0.0))


def save_reference(path: str, mu, sigma) -> None:
  """Write EDM-format reference statistics ``{mu: [D], sigma: [D, D]}`` (atomically)."""
  mu, sigma = np.asarray(mu, np.float64), np.asarray(sigma, np.float64)
  if mu.ndim != 1 or sigma.shape != (len(mu),) * 2:
    raise ValueError(f'reference statistics need mu [D] and sigma [D, D], got {mu.shape} and '
                     f'{sigma.shape}')
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  tmp = path + '.tmp'
  with open(tmp, 'wb') as f:
    np.savez(f, mu=mu, sigma=sigma)
  os.replace(tmp, path)


def load_reference(path: str, expected_dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """``(mu [D], sigma [D, D])`` of an EDM-format ``.npz``; checks D against ``expected_dim``."""
  if not os.path.exists(path):
    raise FileNotFoundError(f'reference statistics {path} not found: compute them with '
                            f'python -m fastgen.evaluation.reference --out={path} ...')
  with np.load(path) as data:
    if 'mu' not in data or 'sigma' not in data:
      raise ValueError(f'{path} is not an EDM-format reference (.npz with "mu" and "sigma"); '
                       f'it holds {sorted(data.keys())}')
    mu, sigma = data['mu'].astype(np.float64), data['sigma'].astype(np.float64)
  if mu.ndim != 1 or sigma.shape != (len(mu),) * 2:
    raise ValueError(f'{path}: mu {mu.shape} and sigma {sigma.shape} are not [D] and [D, D]')
  if expected_dim is not None and len(mu) != expected_dim:
    raise ValueError(
        f'reference statistics {path} have feature dimension {len(mu)}, but the feature '
        f'extractor gives {expected_dim}: use statistics computed with the same features '
        f'(2048 = Inception pool3), e.g. python -m fastgen.evaluation.reference --out=...')
  return mu, sigma
