"""Closed-form Gaussian-mixture teacher: the exact denoiser of a known distribution.

For p(x0) = sum_k pi_k N(mu_k, S_k) and x = x0 + sigma eps, the posterior mean is

  D(x, sigma) = sum_k w_k(x, sigma) [mu_k + S_k (S_k + sigma^2 I)^-1 (x - mu_k)],
  w_k(x, sigma) ∝ pi_k N(x; mu_k, S_k + sigma^2 I)

(Tweedie's formula applied per component; Karras et al. 2022, Eq. 3 with an exact score).
Covariances are stored by eigendecomposition S_k = U_k diag(lambda_k) U_k^T, so every sigma
costs only diagonal inverses. Components may carry class labels: a labelled query only sees the
components of its class, the null label (``num_classes``) sees all of them.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from fastgen import denoiser as denoiser_lib


def mixture_params(weights, means, covs, labels=None):
  """Teacher parameters (a pytree of arrays) for weights [K], means [K, D], covs [K, D, D]."""
  weights, means, covs = (np.asarray(a, np.float64) for a in (weights, means, covs))
  if not (weights.ndim == 1 and means.shape[0] == covs.shape[0] == weights.shape[0]
          and covs.shape[1:] == (means.shape[1],) * 2):
    raise ValueError(f'mixture shapes disagree: weights {weights.shape}, means {means.shape}, '
                     f'covs {covs.shape}; expected [K], [K, D], [K, D, D]')
  eigvals, eigvecs = np.linalg.eigh(covs)
  labels = np.zeros(len(weights), np.int32) if labels is None else np.asarray(labels, np.int32)
  return {
      'log_weights': jnp.asarray(np.log(weights / weights.sum()), jnp.float32),
      'means': jnp.asarray(means, jnp.float32),
      'eigvecs': jnp.asarray(eigvecs, jnp.float32),
      'eigvals': jnp.asarray(np.clip(eigvals, 0.0, None), jnp.float32),
      'labels': jnp.asarray(labels),
  }


@dataclasses.dataclass(frozen=True)
class GaussianMixtureTeacher:
  """Exact denoiser with the :class:`fastgen.denoiser.Denoiser` call signature.

  ``shape`` is the per-example shape (e.g. (2,) or (8, 8, 1)); params hold the flat D-dim mixture.
  """
  shape: tuple
  num_classes: int = 0
  sigma_data: float = 0.5

  def responsibilities(self, params, x, sigma, labels=None):
    """Posterior component weights w_k(x, sigma) [B, K] and the per-component terms."""
    flat = x.reshape(x.shape[0], -1).astype(jnp.float32)
    sigma = jnp.broadcast_to(jnp.asarray(sigma, jnp.float32), flat.shape[:1])
    var = params['eigvals'][None] + sigma[:, None, None] ** 2            # [B, K, D]
    centred = flat[:, None, :] - params['means'][None]                    # [B, K, D]
    proj = jnp.einsum('bkd,kde->bke', centred, params['eigvecs'])         # U^T (x - mu)
    log_prob = -0.5 * (jnp.sum(jnp.log(var) + proj**2 / var, axis=-1) +
                       flat.shape[1] * jnp.log(2 * jnp.pi))
    logits = params['log_weights'][None] + log_prob
    if labels is not None and self.num_classes:
      in_class = (params['labels'][None] == labels[:, None]) | (labels[:, None] == self.num_classes)
      logits = jnp.where(in_class, logits, -jnp.inf)
    return jax.nn.softmax(logits, axis=-1), proj, var

  def __call__(self, params, x, sigma, labels=None, *, train=False, rng=None):
    del train, rng
    w, proj, var = self.responsibilities(params, x, sigma, labels)
    # S (S + sigma^2)^-1 (x - mu) = U diag(lambda / (lambda + sigma^2)) U^T (x - mu)
    shrunk = jnp.einsum('bke,kde->bkd', proj * params['eigvals'][None] / var, params['eigvecs'])
    per_component = params['means'][None] + shrunk
    return jnp.einsum('bk,bkd->bd', w, per_component).reshape(x.shape).astype(x.dtype)

  def velocity(self, params, x_t, t, labels=None, **unused):
    return denoiser_lib.velocity_from_denoiser(self, params, x_t, t, labels)

  def sample(self, params, rng, num, labels=None):
    """Exact samples x0 ~ p (or p(. | label)): ancestral draw of a component, then a Gaussian."""
    key_k, key_z = jax.random.split(rng)
    logits = jnp.broadcast_to(params['log_weights'], (num,) + params['log_weights'].shape)
    if labels is not None and self.num_classes:
      logits = jnp.where(params['labels'][None] == labels[:, None], logits, -jnp.inf)
    k = jax.random.categorical(key_k, logits)
    z = jax.random.normal(key_z, (num, params['means'].shape[1]))
    x = params['means'][k] + jnp.einsum(
        'bde,be->bd', params['eigvecs'][k], jnp.sqrt(params['eigvals'][k]) * z)
    return x.reshape((num,) + tuple(self.shape))


def fit_mixture(x, labels=None, *, components_per_class=1, reg_covar=1e-3, seed=0):
  """Fit a full-covariance mixture to data (sklearn EM), one group of components per class.

  Returns ``(weights, means, covs, component_labels)`` in numpy; pass them to
  :func:`mixture_params`. ``reg_covar`` keeps every covariance full rank (digits have constant
  border pixels).
  """
  from sklearn import mixture  # Imported here: only fitting needs scikit-learn.
  x = np.asarray(x, np.float64).reshape(len(x), -1)
  labels = np.zeros(len(x), np.int64) if labels is None else np.asarray(labels)
  weights, means, covs, comp_labels = [], [], [], []
  for c in np.unique(labels):
    xc = x[labels == c]
    gm = mixture.GaussianMixture(components_per_class, covariance_type='full',
                                 reg_covar=reg_covar, random_state=seed).fit(xc)
    weights.append(gm.weights_ * len(xc) / len(x))
    means.append(gm.means_)
    covs.append(gm.covariances_)
    comp_labels.append(np.full(components_per_class, c))
  return tuple(np.concatenate(a) for a in (weights, means, covs, comp_labels))
