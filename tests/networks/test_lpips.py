"""LPIPS from a weights file: zero between equal images and positive otherwise, the perceptual
reflow losses vanish at the exact straight-line velocity, and a bad file is one clear error."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastgen.networks import lpips
from fastgen.objectives import reflow


@pytest.fixture(scope='module')
def weights_file(tmp_path_factory):
  """Random weights of the documented layout (fastgen has no real ones), lin weights >= 0."""
  rng = np.random.default_rng(0)
  arrays = {name: (np.abs(rng.standard_normal(shape)) if name.startswith('lin') else
                   rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[:-1])))
            for name, shape in lpips.expected_shapes().items()}
  path = str(tmp_path_factory.mktemp('lpips') / 'lpips_vgg.npz')
  np.savez(path, **{k: v.astype(np.float32) for k, v in arrays.items()})
  return path


def test_lpips_is_a_distance_on_images(weights_file):
  weights = jax.tree.map(jnp.asarray, lpips.load_weights(weights_file))
  x, y = jax.random.uniform(jax.random.key(0), (2, 3, 8, 8, 1), minval=-1, maxval=1)
  noise, t = jax.random.normal(jax.random.key(1), x.shape), jnp.array([0.2, 0.5, 0.9])

  @jax.jit
  def distances(weights):
    loss = lambda v, metric='lpips_huber', divt=False: reflow.velocity_loss(
        metric, {'lpips': weights}, v, noise, x, t, 16, divt)
    v = 1.1 * (noise - x)
    return (lpips.lpips(weights, x, x, 16), lpips.lpips(weights, x, y, 16),
            lpips.lpips(weights, y, x, 16), loss(noise - x), loss(v),
            (loss(v, 'lpips'), loss(v, 'lpips', True), loss(v, divt=True)))

  same, xy, yx, exact, off, (perceptual, perceptual_divt, off_divt) = distances(weights)
  np.testing.assert_allclose(same, 0.0, atol=1e-6)
  assert (np.asarray(xy) > 1e-3).all()
  np.testing.assert_allclose(xy, yx, rtol=1e-5)
  # The rfpp LPIPS-Huber reflow loss is zero at the exact straight-line velocity z - x0.
  np.testing.assert_allclose(exact, 0.0, atol=1e-6)
  assert (np.asarray(off) > 1e-4).all()
  # rfpp --lpips_divt: the LPIPS term (only) divided by t.
  np.testing.assert_allclose(perceptual_divt, perceptual / t, rtol=1e-5)
  np.testing.assert_allclose(off_divt, off + perceptual * (1 / t - 1), rtol=1e-5)


def test_missing_or_malformed_weights_are_one_clear_error(tmp_path, weights_file, monkeypatch):
  monkeypatch.setenv('FASTGEN_CACHE', str(tmp_path / 'cache'))
  with pytest.raises(ValueError, match='lpips_weights.*python -m fastgen.assets fetch lpips-vgg'):
    lpips.load_weights('')
  arrays = dict(np.load(weights_file))
  del arrays['conv12/bias']
  np.savez(tmp_path / 'bad.npz', **arrays)
  with pytest.raises(ValueError, match="conv12/bias"):
    lpips.load_weights(str(tmp_path / 'bad.npz'))


def test_official_state_dicts_convert_to_the_layout_and_the_cache_is_the_default(
    tmp_path, monkeypatch):
  """torchvision's VGG-16 names (conv layers at features.0, 2, 5, ...; OIHW) and LPIPS v0.1's
  lin{l}.model.1.weight [1, C, 1, 1] map onto the documented layout."""
  rng = np.random.default_rng(1)
  shapes = lpips.expected_shapes()
  vgg16, index, k = {}, 0, 0
  for num_convs, _ in lpips.VGG16_BLOCKS:
    for _ in range(num_convs):
      kernel = rng.standard_normal(shapes[f'conv{k}/kernel']).astype(np.float32)
      vgg16[f'features.{index}.weight'] = kernel.transpose(3, 2, 0, 1)  # HWIO -> OIHW
      vgg16[f'features.{index}.bias'] = rng.standard_normal(shapes[f'conv{k}/bias'])
      index, k = index + 2, k + 1
    index += 1  # the max pool after each block
  vgg16['classifier.0.weight'] = np.zeros((4096, 25088), np.float32)
  lin = {f'lin{l}.model.1.weight': np.abs(rng.standard_normal((1, c, 1, 1))).astype(np.float32)
         for l, (_, c) in enumerate(lpips.VGG16_BLOCKS)}
  converted = lpips.weights_from_torch(vgg16, lin)
  assert {k: v.shape for k, v in converted.items()} == shapes
  np.testing.assert_array_equal(converted['conv12/kernel'],
                                vgg16['features.28.weight'].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(converted['lin4'], lin['lin4.model.1.weight'].reshape(-1))
  monkeypatch.setenv('FASTGEN_CACHE', str(tmp_path))
  np.savez(tmp_path / lpips.CACHED_FILE, **converted)
  loaded = lpips.load_weights()
  np.testing.assert_array_equal(loaded['conv3/bias'], converted['conv3/bias'])
