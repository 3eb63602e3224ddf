"""The fake score and its discriminator: one piece shared by SiD / SiDA, SIM and DMD / DMD2.

The fake score f_psi is a denoiser of the generator's own distribution, learnt with the EDM loss
(Karras et al. 2022, Eq. 2 and Table 1) on stop-gradient generator samples (SiD Algorithm 1;
DMD Eq. 6). SiDA and DMD2 read a discriminator off its sown features: logits are their channel
mean (SiDA) or a two-layer head, W1 silu(W0 flatten(features) + b0) + b1 (DMD2's classifier
branch), trained with the GAN's binary cross-entropy (Goodfellow et al. 2014, Eq. 1; DMD2 Eq. 5),

  -log D(real) - log(1 - D(fake)),   generator: -log D(G(z)) (non-saturating, DMD2 Eq. 4).

Differences from the official code: DMD2's strided-convolution head is a two-layer dense head
here; DMD2's classifier logits of generated samples come from the fake score's denoising call
(the same sigma distribution as the official separate call, the same noisy sample).

Details: docs/rules/fake_score.md.
"""

import jax
import jax.numpy as jnp

from fastgen import diffusion, samplers
from fastgen import denoiser as denoiser_lib
from fastgen.objectives import consistency


class OneStepGenerator:
  """What SiD, SIM and Uni-Instruct share: a data-free one-step generator
  x_g = G_theta(z) = D_theta(sigma_init z, sigma_init), z ~ N(0, I), trained against a fake score.
  Mixed into a rule's dataclass, which has the fields ``denoiser``, ``sigma_init``, ``sigma_min``,
  ``rho``, ``init_from_teacher`` and ``fake_score_samples_in_train_mode``; params
  ``{'generator', 'fake_score'}``."""

  def init(self, rng, batch, teacher_params):
    key_g, key_f, key_label = jax.random.split(rng, 3)
    labels = denoiser_lib.uniform_labels(key_label, batch['x'].shape[0], self.denoiser.num_classes)
    generator, fake_score_params = init_generator_and_fake_score(
        self.denoiser, key_g, key_f, batch['x'], labels, teacher_params, self.init_from_teacher)
    return {'generator': generator, 'fake_score': fake_score_params}

  def _generate(self, generator_params, z, labels, *, train=False, rng=None):
    """x_g = G_theta(z) = D_theta(sigma_init z, sigma_init) for z ~ N(0, I)."""
    return self.denoiser(generator_params, self.sigma_init * z, self.sigma_init, labels,
                         train=train, rng=rng)

  def _samples(self, group, generator_params, shape, rng):
    """``(x_g, labels, key)``: a batch of generator samples for ``group``'s loss, their uniform
    labels and a key for the rest of the loss. The generator runs in train mode for its own loss,
    in inference mode for the fake score's samples (official sid_training_loop.py:
    G_ddp.train() / .eval() around its own update), or in train mode for both with
    ``fake_score_samples_in_train_mode``: the fake score then learns the distribution the
    generator's loss samples (with dropout > 0 the two differ)."""
    key_label, key_z, key_gen, key_loss = jax.random.split(rng, 4)
    labels = denoiser_lib.uniform_labels(key_label, shape[0], self.denoiser.num_classes)
    train = group == 'generator' or self.fake_score_samples_in_train_mode
    x_g = self._generate(generator_params, jax.random.normal(key_z, shape), labels,
                         train=train, rng=key_gen)
    return x_g, labels, key_loss

  def sample(self, params, teacher_params, rng, labels, shape, num_steps):
    """``num_steps=1``: x = G(z). ``k > 1`` (an extension, in none of these papers): multistep
    consistency-style sampling (Song et al. 2023, Algorithm 1) with G in place of the
    consistency function: re-noise to sigma_i and apply G at sigma_i, for the k - 1 interior
    points sigma_1 > ... > sigma_{k-1} of a (k + 1)-point Karras grid (EDM Eq. 5) from sigma_init
    to sigma_min. G is trained only at sigma_init, so later steps rely on what it kept of the
    teacher's denoiser."""
    del teacher_params
    labels = denoiser_lib.conditioning_labels(self.denoiser, labels)
    return samplers.multistep_sample(
        lambda x, sigma: self.denoiser(params['generator'], x, sigma, labels), rng, shape,
        samplers.multistep_sigmas(num_steps, self.sigma_min, self.sigma_init, self.rho))


def score_gap(f_real, f_fake):
  """Batch mean of ||f_real - f_fake||^2: how far the fake score is from the teacher."""
  return jnp.mean(jnp.sum((f_real - f_fake) ** 2, axis=tuple(range(1, f_real.ndim))))


def check_adversarial_weights(generator_weight, discriminator_weight):
  """The adversarial term (SiDA, DMD2) needs both objective.gan_generator_weight and
  objective.gan_discriminator_weight > 0, or both 0 (no discriminator)."""
  if (generator_weight > 0) != (discriminator_weight > 0):
    raise ValueError('the adversarial term (SiDA, DMD2) needs both objective.gan_generator_weight '
                     'and objective.gan_discriminator_weight > 0 (or both 0), got '
                     f'{generator_weight} and {discriminator_weight}')


def check_grid_fractions(u_min, u_max):
  """The generator loss's noise levels u ~ U[u_min, u_max] on the continuous Karras grid
  (:func:`fastgen.diffusion.sample_karras_sigma`) need 0 <= u_min < u_max <= 1."""
  if not 0.0 <= u_min < u_max <= 1.0:
    raise ValueError(f'objective.u_min={u_min}, u_max={u_max}: need 0 <= u_min < u_max <= 1')


FAKE_SCORE_SIGMAS = ('karras_grid', 'lognormal')


def check_fake_score_sigma(kind: str) -> None:
  if kind not in FAKE_SCORE_SIGMAS:
    raise ValueError(f'unknown objective.fake_score_sigma {kind!r}; known: '
                     f'{", ".join(FAKE_SCORE_SIGMAS)}')


def sample_fake_score_sigma(kind: str, rng, shape, *, sigma_min, sigma_max, rho, p_mean, p_std):
  """The fake score's training noise levels: 'karras_grid', sigma = karras_sigma(u) with
  u ~ U[0, 1] (DMD2's t ~ U{0, ..., 999} on its 1000-point grid, read continuously), or
  'lognormal', EDM's ln sigma ~ N(p_mean, p_std^2) (SiD's, SiDA's and SIM's)."""
  if kind == 'karras_grid':
    return diffusion.sample_karras_sigma(rng, shape, 0.0, 1.0, sigma_min, sigma_max, rho)
  return diffusion.sample_lognormal_sigma(rng, shape, p_mean, p_std)


def init_generator_and_fake_score(denoiser, key_g, key_f, x, labels, teacher_params,
                                  init_from_teacher: bool):
  """``(generator_params, fake_score_params)``: both copies of the teacher (the papers' choice;
  the teacher must have the student's architecture), or fresh inits from ``key_g``, ``key_f``."""
  generator = consistency.init_student(denoiser.init, key_g, x, labels, teacher_params,
                                       init_from_teacher)
  fake_score = consistency.init_student(denoiser.init, key_f, x, labels, teacher_params,
                                        init_from_teacher)
  return generator, fake_score


def init_generator_and_fake_score_with_head(denoiser, rng, x, teacher_params,
                                            init_from_teacher: bool, head_hidden: int,
                                            with_head: bool):
  """``{'generator', 'fake_score': {'denoiser'[, 'head']}}``: the generator and fake score of
  :func:`init_generator_and_fake_score`, and with ``with_head`` a two-layer head on the fake
  score's features (DMD2's GAN classifier, Uni-Instruct's density ratio)."""
  key_g, key_f, key_label, key_head = jax.random.split(rng, 4)
  labels = denoiser_lib.uniform_labels(key_label, x.shape[0], denoiser.num_classes)
  generator, fake_score_params = init_generator_and_fake_score(
      denoiser, key_g, key_f, x, labels, teacher_params, init_from_teacher)
  fake = {'denoiser': fake_score_params}
  if with_head:
    features = jax.eval_shape(lambda p: denoiser.with_features(
        p, x, jnp.ones(x.shape[:1]), labels)[1], fake_score_params)
    fake['head'] = init_head(key_head, features.shape[1:], head_hidden)
  return {'generator': generator, 'fake_score': fake}


def init_head(rng, feature_shape, hidden: int):
  """Parameters of the two-layer discriminator head for features [B, *feature_shape]."""
  key0, key1 = jax.random.split(rng)
  fan_in = 1
  for d in feature_shape:
    fan_in *= d
  glorot = jax.nn.initializers.glorot_uniform()
  return {'w0': glorot(key0, (fan_in, hidden)), 'b0': jnp.zeros((hidden,)),
          'w1': glorot(key1, (hidden, 1)), 'b1': jnp.zeros((1,))}


def discriminator_logits(features, head_params=None):
  """Logits [B, positions]: the channel mean of ``features`` at every position (SiDA), or with
  ``head_params`` one logit per example, W1 silu(W0 flatten(features) + b0) + b1 (DMD2)."""
  features = features.astype(jnp.float32)
  if head_params is None:
    return jnp.mean(features, axis=-1).reshape(features.shape[0], -1)
  hidden = jax.nn.silu(features.reshape(features.shape[0], -1) @ head_params['w0'] +
                       head_params['b0'])
  return hidden @ head_params['w1'] + head_params['b1']


def discriminator_loss(logits_real, logits_fake):
  """Per-example GAN classifier loss, BCE with real = 1 and fake = 0:
  mean_pos [softplus(-l_real) + softplus(l_fake)] = -log D(real) - log(1 - D(fake))."""
  return jnp.mean(jax.nn.softplus(-logits_real), axis=-1) + jnp.mean(
      jax.nn.softplus(logits_fake), axis=-1)


def generator_adversarial_loss(logits_fake):
  """Per-example non-saturating generator loss mean_pos softplus(-l_fake) = -log D(G(z))."""
  return jnp.mean(jax.nn.softplus(-logits_fake), axis=-1)


def fake_score_losses(denoiser, denoiser_params, x_g, labels, rng, *, sample_sigma,
                      x_real=None, real_labels=None, head_params=None, independent_real=False):
  """The fake score's per-example losses ``(denoising, discriminator, sigma)``.

  ``denoising`` is the EDM loss lambda(sigma) mean_d ||f_psi(sg(x_g) + sigma eps) - sg(x_g)||^2
  with sigma = ``sample_sigma(key, [B])`` (SiD: EDM's log-normal; DMD: uniform on the Karras
  grid). With real data ``x_real`` (shaped like x_g) the same network call also classifies noisy
  generated and noisy real samples, whose logits' :func:`discriminator_loss` is returned with the
  generated samples' sigma; else both are None. The real samples share sigma and eps with the
  generated ones (SiDA's official ``fakescore_discriminator_share_encoder_loss``), or with
  ``independent_real`` draw their own (DMD2's ``compute_cls_logits``, one call per batch).
  """
  x_g = jax.lax.stop_gradient(x_g)
  key_sigma, key_eps, key_dropout = jax.random.split(rng, 3)
  batch_size = x_g.shape[0]
  sigma = sample_sigma(key_sigma, (batch_size,))
  noise = diffusion.expand_like(sigma, x_g) * jax.random.normal(key_eps, x_g.shape)
  weight = diffusion.edm_loss_weight(sigma, denoiser.sigma_data)
  if x_real is None:
    x0_hat = denoiser(denoiser_params, x_g + noise, sigma, labels, train=True, rng=key_dropout)
    return weight * jnp.mean((x0_hat - x_g) ** 2, axis=tuple(range(1, x_g.ndim))), None, None
  if x_real.shape != x_g.shape:
    raise ValueError(f'real data {x_real.shape} and generator samples {x_g.shape} differ in shape')
  sigma_real, noise_real = sigma, noise
  if independent_real:
    key_sigma_real, key_eps_real = jax.random.split(jax.random.fold_in(rng, 1))
    sigma_real = sample_sigma(key_sigma_real, (batch_size,))
    noise_real = diffusion.expand_like(sigma_real, x_g) * jax.random.normal(key_eps_real,
                                                                             x_g.shape)
  both_labels = None if labels is None else jnp.concatenate([labels, real_labels])
  x0_hat, features = denoiser.with_features(
      denoiser_params, jnp.concatenate([x_g + noise, x_real + noise_real]),
      jnp.concatenate([sigma, sigma_real]), both_labels, train=True, rng=key_dropout)
  denoising = weight * jnp.mean((x0_hat[:batch_size] - x_g) ** 2,
                                axis=tuple(range(1, x_g.ndim)))
  logits = discriminator_logits(features, head_params)
  return denoising, discriminator_loss(logits[batch_size:], logits[:batch_size]), sigma
