"""LPIPS from a weights file: zero between equal images and positive otherwise, the perceptual
reflow losses vanish at the exact straight-line velocity, piq's variant (average pooling, as
2-RF++ uses it) differs from LPIPS's by the pooling only, and a bad file is one clear error."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastgen.networks import lpips
from fastgen.objectives import reflow
from tests.networks import lpips_stand_in


@pytest.fixture(scope='module')
def weights_file(tmp_path_factory):
  return lpips_stand_in.write_weights(str(tmp_path_factory.mktemp('lpips') / 'lpips_vgg.npz'))


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


def _identity_weights():
  """A VGG-16 stand-in whose convolutions pass their first input channels through unchanged."""
  weights = {}
  for name, shape in lpips.expected_shapes().items():
    weights[name] = np.zeros(shape, np.float32)
    if name.endswith('/kernel'):
      channels = np.arange(min(shape[2], shape[3]))
      weights[name][1, 1, channels, channels] = 1.0
  return jax.tree.map(jnp.asarray, weights)


@pytest.mark.parametrize('pooling, reduce', [('max', np.max), ('average', np.mean)])
def test_pooling_between_the_vgg_blocks(pooling, reduce):
  # LPIPS's VGG-16 max-pools; piq's LPIPS(replace_pooling=True) average-pools each 2x2 window.
  x = np.asarray(jax.random.uniform(jax.random.key(0), (1, 16, 16, 3)))
  taps = lpips._features(_identity_weights(), jnp.asarray(x), pooling)
  windows = x.reshape(1, 8, 2, 8, 2, 3)
  np.testing.assert_allclose(taps[0][..., :3], x)
  np.testing.assert_allclose(taps[1][..., :3], reduce(windows, axis=(2, 4)), rtol=1e-6)
  with pytest.raises(ValueError, match='pooling'):
    lpips._features(_identity_weights(), jnp.asarray(x), 'min')


def test_piqs_input_standardisation_is_lpips_scaling_layer():
  # piq: (x01 - ImageNet mean) / ImageNet std of x01 = x * 0.5 + 0.5 (rfpp's call).
  x = np.array([-1.0, -0.3, 0.0, 0.5, 1.0], np.float32)[:, None]
  mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
  np.testing.assert_allclose((x - lpips.SHIFT) / lpips.SCALE, (x * 0.5 + 0.5 - mean) / std,
                             rtol=1e-6, atol=1e-6)


@dataclasses.dataclass(frozen=True)
class _ScaledIdentity:
  """An image 'velocity model' v = s x_t with one parameter s."""
  num_classes: int = 0

  def init(self, rng, x, labels=None):
    del rng, x, labels
    return {'scale': jnp.ones(())}

  def velocity(self, params, x_t, t, labels=None, *, train=False, rng=None):
    del t, labels, train, rng
    return params['scale'] * x_t


def test_piq_pooling_is_a_distance_and_reaches_the_reflow_loss(weights_file):
  weights = jax.tree.map(jnp.asarray, lpips.load_weights(weights_file))
  x, y = jax.random.uniform(jax.random.key(0), (2, 3, 16, 16, 3), minval=-1, maxval=1)
  average = lpips.lpips(weights, x, y, 32, 'average')
  np.testing.assert_allclose(lpips.lpips(weights, x, x, 32, 'average'), 0.0, atol=1e-6)
  assert (np.asarray(average) > 1e-3).all()
  assert not np.allclose(average, lpips.lpips(weights, x, y, 32, 'max'), rtol=1e-3)
  batch = {'x': x, 'noise': y, 'label': jnp.zeros((3,), jnp.int32)}

  def reflow_loss(**options):
    objective = reflow.Reflow(_ScaledIdentity(), teacher=None, metric='lpips',
                              lpips_weights=weights_file, lpips_resolution=32,
                              init_from_teacher=False, **options)
    params = objective.init(jax.random.key(0), batch, None)
    return float(objective.loss('student', params, None, None, batch, jax.random.key(1), 0)[0])

  # 2-RF++'s LPIPS is piq's: Reflow average-pools unless told otherwise.
  assert reflow_loss() == reflow_loss(lpips_pooling='average') != reflow_loss(lpips_pooling='max')


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
