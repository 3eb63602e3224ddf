"""The fake score shared by SiD / SiDA and DMD / DMD2: its features come from the same network
call as D(x, sigma), and its discriminator (SiDA's parameter-free one, DMD2's head) learns to tell
real data from generator samples."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fastgen import denoiser as denoiser_lib
from fastgen import teachers
from fastgen.data import toy2d
from fastgen.networks import adm, mlp, unet
from fastgen.objectives import dmd, fake_score, sid


@pytest.mark.parametrize('net, shape, level_shapes', [
    (mlp.MLP(hidden=32, depth=2, emb_dim=16), (4, 2), [(4, 32), (4, 32)]),
    (unet.SongUNet(img_resolution=8, in_channels=1, model_channels=8, channel_mult=(1, 2),
                   num_blocks=1, attn_resolutions=(), dropout=0.0, num_classes=3),
     (4, 8, 8, 1), [(4, 8, 8, 8), (4, 4, 4, 16)]),
    (adm.DhariwalUNet(img_resolution=8, in_channels=1, model_channels=8, channel_mult=(1, 2),
                      num_blocks=1, attn_resolutions=(), dropout=0.0, num_classes=3),
     (4, 8, 8, 1), [(4, 8, 8, 8), (4, 4, 4, 16)]),
])
def test_features_come_with_the_denoiser_output(net, shape, level_shapes):
  """The sown features (and with ``levels`` one map per level, the last of them the same
  features) come from the call that gives D(x, sigma)."""
  denoiser = denoiser_lib.Denoiser(net, 'edm', 0.5)
  x = jax.random.normal(jax.random.key(0), shape)
  labels = jnp.arange(4) % 3 if denoiser.num_classes else None
  # Random params drawn by numpy: a U-Net's init compiles one random kernel per shape (slow).
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda a: jnp.asarray(0.1 * rng.standard_normal(a.shape), a.dtype),
                        jax.eval_shape(denoiser.init, jax.random.key(1), x, labels))
  sigma = jnp.array([0.1, 1.0, 5.0, 40.0])
  x0_hat, features = jax.jit(denoiser.with_features)(params, x, sigma, labels)
  np.testing.assert_allclose(x0_hat, jax.jit(denoiser)(params, x, sigma, labels), rtol=1e-6)
  assert features.shape == level_shapes[-1]
  x0_levels, levels = jax.jit(lambda *a: denoiser.with_features(*a, levels=True))(
      params, x, sigma, labels)
  np.testing.assert_array_equal(x0_levels, x0_hat)
  assert [f.shape for f in levels] == level_shapes
  np.testing.assert_array_equal(levels[-1], features)


def test_discriminator_losses_are_the_gan_cross_entropies():
  logits = jnp.array([[2.0, -1.0], [0.0, 3.0]])
  sigmoid = jax.nn.sigmoid(logits)
  np.testing.assert_allclose(fake_score.generator_adversarial_loss(logits),
                             -jnp.mean(jnp.log(sigmoid), axis=-1), rtol=1e-6)
  np.testing.assert_allclose(fake_score.discriminator_loss(logits, -logits),
                             -2 * jnp.mean(jnp.log(sigmoid), axis=-1), rtol=1e-6)


def _mlp_denoiser():
  return denoiser_lib.Denoiser(mlp.MLP(hidden=64, depth=2, emb_dim=16), 'edm', 1.0)


@pytest.mark.parametrize('rule', ['sida', 'dmd2'])
def test_fake_score_discriminator_learns_to_tell_real_from_generated(rule):
  # The generator is a fresh net (its samples sit near 0) and stays fixed; real data are gmm2d
  # samples around a circle of radius 1.35. Training the fake-score group alone, the
  # discriminator's cross-entropy starts at chance, 2 log 2 = 1.39, and falls (mean of the last
  # 50 of 200 steps, measured: SiDA's parameter-free trunk mean 1.0, DMD2's head 0.5; at the
  # large sigmas of the fake score's noise distribution the two noisy sets overlap, so 0 is out of
  # reach).
  teacher, teacher_params = teachers.analytic_teacher('gmm2d')
  weights = dict(gan_generator_weight=1.0, gan_discriminator_weight=100.0)
  objective = (sid.SiD(_mlp_denoiser(), teacher, init_from_teacher=False, **weights)
               if rule == 'sida' else
               dmd.DMD(_mlp_denoiser(), teacher, init_from_teacher=False, **weights))
  real = jnp.asarray(toy2d.sample_gmm2d(np.random.default_rng(0), 128)[0], jnp.float32)
  batch = {'x': real, 'label': jnp.zeros((128,), jnp.int32)}
  params = objective.init(jax.random.key(0), batch, teacher_params)
  optimizer = optax.adam(1e-3)

  def loss(fake_params, key):
    return objective.loss('fake_score', {**params, 'fake_score': fake_params}, None,
                          teacher_params, batch, key, 0)

  @jax.jit
  def step(fake_params, opt_state, key):
    (_, metrics), grads = jax.value_and_grad(loss, has_aux=True)(fake_params, key)
    updates, opt_state = optimizer.update(grads, opt_state, fake_params)
    return optax.apply_updates(fake_params, updates), opt_state, metrics['discriminator_loss']

  fake_params = params['fake_score']
  opt_state, history = optimizer.init(fake_params), []
  for i in range(200):
    fake_params, opt_state, bce = step(fake_params, opt_state, jax.random.key(i))
    history.append(float(bce))
  assert abs(history[0] - 2 * np.log(2)) < 0.05
  assert np.mean(history[-50:]) < 1.2
