"""FID Inception-v3: weight mapping on generated weights, forward pass, preprocessing, errors."""

import os

import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from fastgen.evaluation import inception


def _convs_pytorch_fid():
  """(module name, in, out, kh, kw) of every BasicConv2d of pytorch-fid's FID Inception
  (torchvision's Inception3 with FIDInceptionA/C/E_1/E_2 blocks, num_classes=1008)."""
  convs = [('Conv2d_1a_3x3', 3, 32, 3, 3), ('Conv2d_2a_3x3', 32, 32, 3, 3),
           ('Conv2d_2b_3x3', 32, 64, 3, 3), ('Conv2d_3b_1x1', 64, 80, 1, 1),
           ('Conv2d_4a_3x3', 80, 192, 3, 3)]
  def a(name, i, pool):
    return [(f'{name}.branch1x1', i, 64, 1, 1), (f'{name}.branch5x5_1', i, 48, 1, 1),
            (f'{name}.branch5x5_2', 48, 64, 5, 5), (f'{name}.branch3x3dbl_1', i, 64, 1, 1),
            (f'{name}.branch3x3dbl_2', 64, 96, 3, 3), (f'{name}.branch3x3dbl_3', 96, 96, 3, 3),
            (f'{name}.branch_pool', i, pool, 1, 1)]
  def c(name, c7):
    return [(f'{name}.branch1x1', 768, 192, 1, 1), (f'{name}.branch7x7_1', 768, c7, 1, 1),
            (f'{name}.branch7x7_2', c7, c7, 1, 7), (f'{name}.branch7x7_3', c7, 192, 7, 1),
            (f'{name}.branch7x7dbl_1', 768, c7, 1, 1), (f'{name}.branch7x7dbl_2', c7, c7, 7, 1),
            (f'{name}.branch7x7dbl_3', c7, c7, 1, 7), (f'{name}.branch7x7dbl_4', c7, c7, 7, 1),
            (f'{name}.branch7x7dbl_5', c7, 192, 1, 7), (f'{name}.branch_pool', 768, 192, 1, 1)]
  def e(name, i):
    return [(f'{name}.branch1x1', i, 320, 1, 1), (f'{name}.branch3x3_1', i, 384, 1, 1),
            (f'{name}.branch3x3_2a', 384, 384, 1, 3), (f'{name}.branch3x3_2b', 384, 384, 3, 1),
            (f'{name}.branch3x3dbl_1', i, 448, 1, 1), (f'{name}.branch3x3dbl_2', 448, 384, 3, 3),
            (f'{name}.branch3x3dbl_3a', 384, 384, 1, 3),
            (f'{name}.branch3x3dbl_3b', 384, 384, 3, 1), (f'{name}.branch_pool', i, 192, 1, 1)]
  convs += a('Mixed_5b', 192, 32) + a('Mixed_5c', 256, 64) + a('Mixed_5d', 288, 64)
  convs += [('Mixed_6a.branch3x3', 288, 384, 3, 3), ('Mixed_6a.branch3x3dbl_1', 288, 64, 1, 1),
            ('Mixed_6a.branch3x3dbl_2', 64, 96, 3, 3), ('Mixed_6a.branch3x3dbl_3', 96, 96, 3, 3)]
  convs += c('Mixed_6b', 128) + c('Mixed_6c', 160) + c('Mixed_6d', 160) + c('Mixed_6e', 192)
  convs += [('Mixed_7a.branch3x3_1', 768, 192, 1, 1), ('Mixed_7a.branch3x3_2', 192, 320, 3, 3),
            ('Mixed_7a.branch7x7x3_1', 768, 192, 1, 1), ('Mixed_7a.branch7x7x3_2', 192, 192, 1, 7),
            ('Mixed_7a.branch7x7x3_3', 192, 192, 7, 1), ('Mixed_7a.branch7x7x3_4', 192, 192, 3, 3)]
  return convs + e('Mixed_7b', 1280) + e('Mixed_7c', 2048)


def fake_pytorch_fid_state_dict(seed=0):
  """Random numpy tensors with pytorch-fid's key names and shapes (He-scaled convolutions)."""
  rng = np.random.default_rng(seed)
  state = {}
  for name, cin, cout, kh, kw in _convs_pytorch_fid():
    fan_in = cin * kh * kw
    state[f'{name}.conv.weight'] = (rng.standard_normal((cout, cin, kh, kw)) *
                                    np.sqrt(2 / fan_in)).astype(np.float32)
    state[f'{name}.bn.weight'] = rng.uniform(0.5, 1.5, cout).astype(np.float32)
    state[f'{name}.bn.bias'] = rng.uniform(-0.3, 0.3, cout).astype(np.float32)
    state[f'{name}.bn.running_mean'] = rng.uniform(-0.2, 0.2, cout).astype(np.float32)
    state[f'{name}.bn.running_var'] = rng.uniform(0.5, 2.0, cout).astype(np.float32)
    state[f'{name}.bn.num_batches_tracked'] = np.array(0, np.int64)
  state['fc.weight'] = (rng.standard_normal((1008, 2048)) * 0.01).astype(np.float32)
  state['fc.bias'] = np.zeros(1008, np.float32)
  return state


def _nvidia_modules():
  """(NVIDIA TorchScript module, torchvision module) pairs: TF scopes conv, tower, tower_1, ...;
  A-D blocks nest Sequentials (``tower.conv_1``), E blocks use flat names (``tower_mixed_conv``)."""
  pairs = [(f'layers.{n}', t) for n, t in (
      ('conv', 'Conv2d_1a_3x3'), ('conv_1', 'Conv2d_2a_3x3'), ('conv_2', 'Conv2d_2b_3x3'),
      ('conv_3', 'Conv2d_3b_1x1'), ('conv_4', 'Conv2d_4a_3x3'))]
  a = [('conv', 'branch1x1'), ('tower.conv', 'branch5x5_1'), ('tower.conv_1', 'branch5x5_2'),
       ('tower_1.conv', 'branch3x3dbl_1'), ('tower_1.conv_1', 'branch3x3dbl_2'),
       ('tower_1.conv_2', 'branch3x3dbl_3'), ('tower_2.conv', 'branch_pool')]
  b = [('conv', 'branch3x3'), ('tower.conv', 'branch3x3dbl_1'), ('tower.conv_1', 'branch3x3dbl_2'),
       ('tower.conv_2', 'branch3x3dbl_3')]
  c = ([('conv', 'branch1x1'), ('tower_2.conv', 'branch_pool')] +
       [(f'tower.conv{s}', f'branch7x7_{i + 1}') for i, s in enumerate(('', '_1', '_2'))] +
       [(f'tower_1.conv{s}', f'branch7x7dbl_{i + 1}')
        for i, s in enumerate(('', '_1', '_2', '_3', '_4'))])
  d = [('tower.conv', 'branch3x3_1'), ('tower.conv_1', 'branch3x3_2')] + [
      (f'tower_1.conv{s}', f'branch7x7x3_{i + 1}') for i, s in enumerate(('', '_1', '_2', '_3'))]
  e = [('conv', 'branch1x1'), ('tower_conv', 'branch3x3_1'), ('tower_mixed_conv', 'branch3x3_2a'),
       ('tower_mixed_conv_1', 'branch3x3_2b'), ('tower_1_conv', 'branch3x3dbl_1'),
       ('tower_1_conv_1', 'branch3x3dbl_2'), ('tower_1_mixed_conv', 'branch3x3dbl_3a'),
       ('tower_1_mixed_conv_1', 'branch3x3dbl_3b'), ('tower_2_conv', 'branch_pool')]
  blocks = [('mixed', 'Mixed_5b', a), ('mixed_1', 'Mixed_5c', a), ('mixed_2', 'Mixed_5d', a),
            ('mixed_3', 'Mixed_6a', b), ('mixed_4', 'Mixed_6b', c), ('mixed_5', 'Mixed_6c', c),
            ('mixed_6', 'Mixed_6d', c), ('mixed_7', 'Mixed_6e', c), ('mixed_8', 'Mixed_7a', d),
            ('mixed_9', 'Mixed_7b', e), ('mixed_10', 'Mixed_7c', e)]
  for nvidia_block, torch_block, branches in blocks:
    pairs += [(f'layers.{nvidia_block}.{n}', f'{torch_block}.{t}') for n, t in branches]
  return pairs


@pytest.fixture(scope='module')
def state_dict():
  return fake_pytorch_fid_state_dict()


@pytest.fixture(scope='module')
def converted(state_dict):
  return inception.convert_state_dict(state_dict)


def test_every_tensor_maps_to_exactly_one_parameter_of_its_shape(state_dict, converted):
  params, detector = converted
  assert detector == 'pytorch_fid'
  flat = traverse_util.flatten_dict(params)
  tensors = {k: v for k, v in state_dict.items() if not k.endswith('num_batches_tracked')}
  assert len(tensors) == 94 * 5 + 2  # 94 conv-bn units and the classifier
  paths = {}
  for key, value in tensors.items():
    path, transform = inception.flax_path(key)
    assert path is not None, key
    assert path not in paths, f'{key} and {paths.get(path)} map to one parameter'
    paths[path] = key
    np.testing.assert_array_equal(flat[path], transform(value))
    assert flat[path].size == value.size
  assert set(paths) == set(inception.param_shapes()) == set(flat)
  kernel = flat[('Mixed_7b', 'branch3x3_2a', 'conv', 'kernel')]
  assert kernel.shape == (1, 3, 384, 384)  # OIHW (384, 384, 1, 3) -> HWIO


def test_forward_at_32_and_64(converted):
  features = inception.InceptionFeatures(*converted)
  rng = np.random.default_rng(0)
  for size in (32, 64):
    images = jnp.asarray(rng.uniform(-1, 1, (2, size, size, 3)), jnp.float32)
    out = np.asarray(features.features(images))
    assert out.shape == (2, 2048) and np.isfinite(out).all() and (out >= 0).all()
    assert np.abs(out[0] - out[1]).max() > 0
  grey = jnp.asarray(rng.uniform(-1, 1, (2, 32, 32, 1)), jnp.float32)
  np.testing.assert_allclose(features.features(grey), features.features(jnp.tile(grey, 3)),
                             rtol=1e-5, atol=1e-6)


def test_nvidia_names_map_onto_the_same_network(state_dict):
  """NVIDIA's TorchScript names: TF scopes (``layers.mixed_9.tower_1.mixed.conv``), batch norm
  as ``beta``/``mean``/``var`` without scale, ``output`` for the classifier."""
  assert (inception.nvidia_to_torchvision('layers.mixed_9.tower_1.mixed.conv_1.beta') ==
          inception.nvidia_to_torchvision('layers.mixed_9.tower_1_mixed_conv_1.beta') ==
          'Mixed_7b.branch3x3dbl_3b.bn.bias')
  assert inception.nvidia_to_torchvision('layers.conv_4.weight') == 'Conv2d_4a_3x3.conv.weight'
  assert inception.nvidia_to_torchvision('layers.mixed_8.tower_1.conv_3.var') == (
      'Mixed_7a.branch7x7x3_4.bn.running_var')
  assert inception.nvidia_to_torchvision('output.weight') == 'fc.weight'
  assert inception.nvidia_to_torchvision('layers.mixed_2.tower_9.conv.mean') is None
  nvidia = {}
  for nvidia_prefix, torch_prefix in _nvidia_modules():
    for leaf, torch_leaf in (('weight', 'conv.weight'), ('beta', 'bn.bias'),
                             ('mean', 'bn.running_mean'), ('var', 'bn.running_var')):
      nvidia[f'{nvidia_prefix}.{leaf}'] = state_dict[f'{torch_prefix}.{torch_leaf}']
  nvidia['output.weight'], nvidia['output.bias'] = state_dict['fc.weight'], state_dict['fc.bias']
  params, detector = inception.convert_state_dict(nvidia)
  assert detector == 'nvidia'
  flat = traverse_util.flatten_dict(params)
  np.testing.assert_array_equal(flat[('Mixed_6b', 'branch7x7dbl_4', 'conv', 'kernel')],
                                state_dict['Mixed_6b.branch7x7dbl_4.conv.weight'].transpose(
                                    2, 3, 1, 0))
  np.testing.assert_array_equal(flat[('Mixed_5b', 'branch1x1', 'bn', 'scale')], 1.0)


def test_wrong_shape_and_unknown_tensors_are_reported(state_dict):
  bad = dict(state_dict)
  bad['Mixed_6a.branch3x3.conv.weight'] = np.zeros((384, 288, 5, 5), np.float32)
  with pytest.raises(ValueError, match=r'1 of the wrong shape: Mixed_6a.branch3x3.conv.weight'):
    inception.convert_state_dict(bad)
  bad = {k: v for k, v in state_dict.items() if not k.startswith('Mixed_7c')}
  bad['AuxLogits.fc.weight'] = np.zeros((1000, 768), np.float32)
  with pytest.raises(ValueError, match=r'1 unrecognised: AuxLogits.*45 Flax parameters without'):
    inception.convert_state_dict(bad)


def test_missing_weights_message(monkeypatch, tmp_path):
  monkeypatch.delenv(inception.ENV_VAR, raising=False)
  monkeypatch.setenv('FASTGEN_CACHE', str(tmp_path / 'cache'))
  for path in ('', str(tmp_path / 'nowhere.pkl')):
    with pytest.raises(FileNotFoundError) as error:
      inception.load_inception(path)
    message = str(error.value)
    for needed in (inception.NVIDIA_FILE, inception.PYTORCH_FID_FILE, inception.ENV_VAR,
                   inception.CONFIG_KEY, 'python -m fastgen.assets fetch inception'):
      assert needed in message
  assert 'nowhere.pkl does not exist' in message
  assert str(tmp_path / 'cache' / inception.PYTORCH_FID_FILE) in str(
      pytest.raises(FileNotFoundError, inception.load_inception, '').value)


def test_converted_file_round_trip(converted, tmp_path, monkeypatch):
  path = str(tmp_path / ('weights' + inception.CACHE_SUFFIX))
  inception.save_flax_weights(path, *converted)
  monkeypatch.setenv(inception.ENV_VAR, path)
  loaded = inception.load_inception()
  assert loaded.detector == converted[1]
  np.testing.assert_array_equal(loaded.params['fc']['kernel'], converted[0]['fc']['kernel'])
  with open(path, 'wb') as f:
    f.write(b'\x80not msgpack of ours')
  with pytest.raises(ValueError, match='delete it to re-convert'):
    inception.load_inception(path)
  # No path, no variable: the fetched file in the asset cache (here its conversion beside it).
  monkeypatch.delenv(inception.ENV_VAR)
  monkeypatch.setenv('FASTGEN_CACHE', str(tmp_path / 'cache'))
  fetched = inception.cached_weights_path()
  os.makedirs(os.path.dirname(fetched))
  open(fetched, 'wb').close()
  inception.save_flax_weights(fetched + inception.CACHE_SUFFIX, *converted)
  assert inception.load_inception().detector == converted[1]


def test_torch_file_needs_torch_or_converts(state_dict, tmp_path):
  path = str(tmp_path / inception.PYTORCH_FID_FILE)
  try:
    import torch
  except ImportError:
    open(path, 'wb').close()
    with pytest.raises(ImportError, match='needs PyTorch once'):
      inception.load_inception(path)
    return
  torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in state_dict.items()}, path)
  assert inception.load_inception(path).detector == 'pytorch_fid'
  assert os.path.exists(path + inception.CACHE_SUFFIX)


@pytest.mark.parametrize('mode', ['tf_legacy', 'half_pixel'])
def test_resize_matrix(mode):
  for size in (8, 32, 64, 299, 512):
    weights = inception.resize_matrix(size, 299, mode)
    np.testing.assert_allclose(weights.sum(1), 1.0, rtol=1e-6)
    assert (weights >= 0).all()
  np.testing.assert_allclose(inception.resize_matrix(299, 299, mode), np.eye(299), atol=1e-6)
  legacy = inception.resize_matrix(2, 4, 'tf_legacy')  # sources 0, 0.5, 1, 1.5 -> clamped 1
  np.testing.assert_allclose(legacy, [[1, 0], [0.5, 0.5], [0, 1], [0, 1]])
  half = inception.resize_matrix(2, 4, 'half_pixel')  # sources -0.25 -> 0, 0.25, 0.75, 1.25 -> 1
  np.testing.assert_allclose(half, [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])


def test_preprocess_quantises_and_scales():
  images = jnp.full((1, 4, 4, 3), 1.0)
  np.testing.assert_allclose(inception.preprocess(images, 'pytorch_fid'), 1.0, rtol=1e-6)
  np.testing.assert_allclose(inception.preprocess(images, 'nvidia'), 127 / 128, rtol=1e-6)
  np.testing.assert_allclose(inception.preprocess(-images, 'nvidia'), -1.0, rtol=1e-6)
  with pytest.raises(ValueError, match='1 or 3 channels'):
    inception.preprocess(jnp.zeros((1, 4, 4, 2)), 'nvidia')
