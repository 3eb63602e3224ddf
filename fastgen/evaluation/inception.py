"""The FID Inception-v3 (TensorFlow graph ``inception-2015-12-05``) in Flax: pool3 features.

FID (Heusel et al. 2017) is defined with the 2048-d pool3 features of the 2015-12-05 TF graph
(Szegedy et al. 2016, "Rethinking the Inception Architecture", Fig. 5-7 blocks). It is not
torchvision's Inception-v3: in every A, C and E block the average pool ignores padded zeros (TF
'SAME' pooling), the last E block (Mixed_7c) pools with max instead of average, batch norm has no
scale (TF: gamma = 1) and eps 1e-3, the classifier has 1008 classes.

Weights are not shipped. Either file works, given by path (``eval.inception_weights`` or the
environment variable ``FASTGEN_INCEPTION_WEIGHTS``); with neither, pytorch-fid's file in the asset
cache is used, which ``python -m fastgen.assets fetch inception`` downloads and verifies:

* ``inception-2015-12-05.pkl``: NVIDIA's pickled TorchScript port, the detector of StyleGAN3,
  EDM, ECT, SiD, DMD2 and NVIDIA FastGen, i.e. of the numbers in those papers (EDM's reference
  ``cifar10-32x32.npz`` was computed with it). The same network as a TorchScript archive,
  ``inception-2015-12-05.pt`` (StyleGAN2-ADA, clean-fid), works too.
* ``pt_inception-2015-12-05-6726825d.pth``: pytorch-fid's state dict (torchvision key names).

Reading either needs ``torch`` once; the weights are then converted and cached as a Flax-native
``<file>.flax.msgpack`` beside it (which may also be given directly).

Preprocessing follows the detector the weights came from (each states which it was):

* every input: images in [-1, 1] are quantised to the 8-bit levels v = clip(floor(127.5 x + 128),
  0, 255), as the images papers evaluate are PNGs (EDM ``generate.py``); 1 channel is repeated
  to 3.
* ``nvidia``: TF1 ``ResizeBilinear(align_corners=False)`` to 299x299 (source pixel
  ``i * in / 299``, clamped at the border; NVIDIA's graph emulates it with ``affine_grid`` +
  ``grid_sample``), then (v - 128) / 128 (the TF graph's Sub/Mul nodes).
* ``pytorch_fid``: ``F.interpolate(bilinear, align_corners=False)`` to 299x299 (half-pixel source
  ``(i + 0.5) in / 299 - 0.5``, clamped at 0), then 2 v / 255 - 1.

With NVIDIA's file and EDM's reference statistics this is the FID papers report, up to float
rounding (the ops were checked against torch's on random weights; the real files were not at
hand). pytorch-fid's file resizes and scales differently and gives slightly different values.
"""

import os
import pickle

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import msgpack
import numpy as np
from flax import serialization
from flax import traverse_util

from fastgen.assets import fetch

ENV_VAR = 'FASTGEN_INCEPTION_WEIGHTS'
CONFIG_KEY = 'eval.inception_weights'
NVIDIA_FILE = 'inception-2015-12-05.pkl'
PYTORCH_FID_FILE = 'pt_inception-2015-12-05-6726825d.pth'
_NVIDIA_URL = ('https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/'
               'metrics/inception-2015-12-05.pkl')
_PYTORCH_FID_URL = ('https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/'
                    'pt_inception-2015-12-05-6726825d.pth')
CACHE_SUFFIX = '.flax.msgpack'
_FORMAT = 'fastgen-inception-2015-12-05'
RESOLUTION = 299
FEATURE_DIM = 2048
NUM_CLASSES = 1008

# Full float32 convolutions: TPUs (bfloat16 passes) and recent GPUs (TF32) otherwise round.
_PRECISION = jax.lax.Precision.HIGHEST
# detector -> (resize, offset, scale): network input = (resize(v) - offset) / scale.
DETECTORS = {'nvidia': ('tf_legacy', 128.0, 128.0), 'pytorch_fid': ('half_pixel', 127.5, 127.5)}


# ------------------------------------------------------------------------------------- network


class FrozenBatchNorm(nn.Module):
  """Inference batch norm y = (x - mean) scale / sqrt(var + eps) + bias, statistics as params."""
  eps: float = 1e-3

  @nn.compact
  def __call__(self, x):
    shape = (x.shape[-1],)
    scale = self.param('scale', nn.initializers.ones, shape)
    bias = self.param('bias', nn.initializers.zeros, shape)
    mean = self.param('mean', nn.initializers.zeros, shape)
    var = self.param('var', nn.initializers.ones, shape)
    return (x - mean) * (scale * jax.lax.rsqrt(var + self.eps)) + bias


class BasicConv2d(nn.Module):
  """Conv (no bias) -> batch norm -> ReLU; explicit symmetric padding as in torchvision."""
  features: int
  kernel: tuple[int, int]
  stride: int = 1
  padding: tuple[int, int] = (0, 0)

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(self.features, self.kernel, self.stride, padding=[(p, p) for p in self.padding],
                use_bias=False, precision=_PRECISION, name='conv')(x)
    return nn.relu(FrozenBatchNorm(name='bn')(x))


def _avg_pool_3x3(x):
  """TF 'SAME' average pool: padded zeros are not counted (pytorch-fid's patch)."""
  return nn.avg_pool(x, (3, 3), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_stride2(x):
  return nn.max_pool(x, (3, 3), strides=(2, 2))


class InceptionA(nn.Module):
  """Fig. 5 block (Mixed_5b-d): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1."""
  pool_features: int

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv2d(64, (1, 1), name='branch1x1')(x)
    b5 = BasicConv2d(48, (1, 1), name='branch5x5_1')(x)
    b5 = BasicConv2d(64, (5, 5), padding=(2, 2), name='branch5x5_2')(b5)
    b3 = BasicConv2d(64, (1, 1), name='branch3x3dbl_1')(x)
    b3 = BasicConv2d(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(b3)
    b3 = BasicConv2d(96, (3, 3), padding=(1, 1), name='branch3x3dbl_3')(b3)
    bp = BasicConv2d(self.pool_features, (1, 1), name='branch_pool')(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  """Grid reduction 35 -> 17 (Mixed_6a): 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2."""

  @nn.compact
  def __call__(self, x):
    b3 = BasicConv2d(384, (3, 3), stride=2, name='branch3x3')(x)
    bd = BasicConv2d(64, (1, 1), name='branch3x3dbl_1')(x)
    bd = BasicConv2d(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = BasicConv2d(96, (3, 3), stride=2, name='branch3x3dbl_3')(bd)
    return jnp.concatenate([b3, bd, _max_pool_3x3_stride2(x)], axis=-1)


class InceptionC(nn.Module):
  """Fig. 6 block (Mixed_6b-e): 7x7 convolutions factorised into 1x7 and 7x1."""
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c7, row, col = self.channels_7x7, dict(padding=(0, 3)), dict(padding=(3, 0))
    b1 = BasicConv2d(192, (1, 1), name='branch1x1')(x)
    b7 = BasicConv2d(c7, (1, 1), name='branch7x7_1')(x)
    b7 = BasicConv2d(c7, (1, 7), **row, name='branch7x7_2')(b7)
    b7 = BasicConv2d(192, (7, 1), **col, name='branch7x7_3')(b7)
    bd = BasicConv2d(c7, (1, 1), name='branch7x7dbl_1')(x)
    bd = BasicConv2d(c7, (7, 1), **col, name='branch7x7dbl_2')(bd)
    bd = BasicConv2d(c7, (1, 7), **row, name='branch7x7dbl_3')(bd)
    bd = BasicConv2d(c7, (7, 1), **col, name='branch7x7dbl_4')(bd)
    bd = BasicConv2d(192, (1, 7), **row, name='branch7x7dbl_5')(bd)
    bp = BasicConv2d(192, (1, 1), name='branch_pool')(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  """Grid reduction 17 -> 8 (Mixed_7a): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2."""

  @nn.compact
  def __call__(self, x):
    b3 = BasicConv2d(192, (1, 1), name='branch3x3_1')(x)
    b3 = BasicConv2d(320, (3, 3), stride=2, name='branch3x3_2')(b3)
    b7 = BasicConv2d(192, (1, 1), name='branch7x7x3_1')(x)
    b7 = BasicConv2d(192, (1, 7), padding=(0, 3), name='branch7x7x3_2')(b7)
    b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name='branch7x7x3_3')(b7)
    b7 = BasicConv2d(192, (3, 3), stride=2, name='branch7x7x3_4')(b7)
    return jnp.concatenate([b3, b7, _max_pool_3x3_stride2(x)], axis=-1)


class InceptionE(nn.Module):
  """Fig. 7 block (Mixed_7b, 7c): expanded 1x3 / 3x1 outputs; ``max_pool`` in Mixed_7c (TF)."""
  max_pool: bool = False

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv2d(320, (1, 1), name='branch1x1')(x)
    b3 = BasicConv2d(384, (1, 1), name='branch3x3_1')(x)
    b3a = BasicConv2d(384, (1, 3), padding=(0, 1), name='branch3x3_2a')(b3)
    b3b = BasicConv2d(384, (3, 1), padding=(1, 0), name='branch3x3_2b')(b3)
    bd = BasicConv2d(448, (1, 1), name='branch3x3dbl_1')(x)
    bd = BasicConv2d(384, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bda = BasicConv2d(384, (1, 3), padding=(0, 1), name='branch3x3dbl_3a')(bd)
    bdb = BasicConv2d(384, (3, 1), padding=(1, 0), name='branch3x3dbl_3b')(bd)
    if self.max_pool:
      pooled = nn.max_pool(x, (3, 3), padding=((1, 1), (1, 1)))
    else:
      pooled = _avg_pool_3x3(x)
    bp = BasicConv2d(192, (1, 1), name='branch_pool')(pooled)
    return jnp.concatenate([b1, b3a, b3b, bda, bdb, bp], axis=-1)


class InceptionV3(nn.Module):
  """[N, 299, 299, 3] network input -> ``(pool3 [N, 2048], logits [N, 1008])``.

  Module names are torchvision's (pytorch-fid's state-dict keys); the logits are unused by FID
  and removed by XLA when only pool3 is kept.
  """

  @nn.compact
  def __call__(self, x):
    x = BasicConv2d(32, (3, 3), stride=2, name='Conv2d_1a_3x3')(x)
    x = BasicConv2d(32, (3, 3), name='Conv2d_2a_3x3')(x)
    x = BasicConv2d(64, (3, 3), padding=(1, 1), name='Conv2d_2b_3x3')(x)
    x = _max_pool_3x3_stride2(x)
    x = BasicConv2d(80, (1, 1), name='Conv2d_3b_1x1')(x)
    x = BasicConv2d(192, (3, 3), name='Conv2d_4a_3x3')(x)
    x = _max_pool_3x3_stride2(x)
    x = InceptionA(32, name='Mixed_5b')(x)
    x = InceptionA(64, name='Mixed_5c')(x)
    x = InceptionA(64, name='Mixed_5d')(x)
    x = InceptionB(name='Mixed_6a')(x)
    for name, channels in (('Mixed_6b', 128), ('Mixed_6c', 160), ('Mixed_6d', 160),
                           ('Mixed_6e', 192)):
      x = InceptionC(channels, name=name)(x)
    x = InceptionD(name='Mixed_7a')(x)
    x = InceptionE(name='Mixed_7b')(x)
    x = InceptionE(max_pool=True, name='Mixed_7c')(x)
    pool3 = x.mean(axis=(1, 2))
    return pool3, nn.Dense(NUM_CLASSES, precision=_PRECISION, name='fc')(pool3)


# -------------------------------------------------------------------------------- preprocessing


def resize_matrix(in_size: int, out_size: int, mode: str) -> np.ndarray:
  """[out, in] bilinear interpolation weights along one axis (no antialiasing, like both
  reference detectors): ``'tf_legacy'`` samples at i * in / out, ``'half_pixel'`` at
  (i + 0.5) in / out - 0.5 clamped at 0; the upper neighbour is clamped to in - 1."""
  i = np.arange(out_size, dtype=np.float64)
  if mode == 'tf_legacy':
    src = i * (in_size / out_size)
  elif mode == 'half_pixel':
    src = np.maximum((i + 0.5) * (in_size / out_size) - 0.5, 0.0)
  else:
    raise ValueError(f'unknown resize mode {mode!r}; known: tf_legacy, half_pixel')
  src = np.minimum(src, in_size - 1)
  lo = np.floor(src).astype(np.int64)
  hi = np.minimum(lo + 1, in_size - 1)
  frac = src - lo
  weights = np.zeros((out_size, in_size), np.float64)
  np.add.at(weights, (np.arange(out_size), lo), 1.0 - frac)
  np.add.at(weights, (np.arange(out_size), hi), frac)
  return weights.astype(np.float32)


def preprocess(images, detector: str):
  """[N, H, W, C in {1, 3}] images in [-1, 1] -> the detector's [N, 299, 299, 3] input."""
  resize, offset, scale = DETECTORS[detector]
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f'Inception features need NHWC images with 1 or 3 channels, got shape '
                     f'{images.shape}')
  levels = jnp.clip(jnp.floor(images.astype(jnp.float32) * 127.5 + 128.0), 0.0, 255.0)
  rows = jnp.asarray(resize_matrix(images.shape[1], RESOLUTION, resize))
  cols = jnp.asarray(resize_matrix(images.shape[2], RESOLUTION, resize))
  resized = jnp.einsum('oh,nhwc,pw->nopc', rows, levels, cols, precision=_PRECISION)
  resized = jnp.broadcast_to(resized, resized.shape[:3] + (3,))
  return (resized - offset) / scale


class InceptionFeatures:
  """Feature extractor: ``features(images [N, H, W, C] in [-1, 1]) -> pool3 [N, 2048]``.

  Two jitted parts: preprocessing (compiled per input size) and the network (compiled once for
  299x299). Sharded inputs stay sharded along the batch.
  """
  name = 'inception'
  dim = FEATURE_DIM

  def __init__(self, params, detector: str):
    if detector not in DETECTORS:
      raise ValueError(f'unknown Inception detector {detector!r}; known: {", ".join(DETECTORS)}')
    self.params, self.detector = params, detector
    self._preprocess = jax.jit(lambda images: preprocess(images, detector))
    self._network = jax.jit(lambda params, x: InceptionV3().apply({'params': params}, x)[0])

  def features(self, images):
    return self._network(self.params, self._preprocess(images))


# ---------------------------------------------------------------------------- weight conversion


def param_shapes() -> dict[tuple[str, ...], tuple[int, ...]]:
  """Flat ``{path: shape}`` of every parameter of :class:`InceptionV3` (no compute)."""
  variables = jax.eval_shape(InceptionV3().init, jax.random.key(0),
                             jnp.zeros((1, RESOLUTION, RESOLUTION, 3)))
  return {path: tuple(leaf.shape)
          for path, leaf in traverse_util.flatten_dict(variables['params']).items()}


# torchvision (module, tensor) -> (Flax param, transform of the torch array)
_LEAVES = {
    ('conv', 'weight'): ('kernel', lambda w: w.transpose(2, 3, 1, 0)),  # OIHW -> HWIO
    ('bn', 'weight'): ('scale', None),
    ('bn', 'bias'): ('bias', None),
    ('bn', 'running_mean'): ('mean', None),
    ('bn', 'running_var'): ('var', None),
    ('fc', 'weight'): ('kernel', lambda w: w.T),
    ('fc', 'bias'): ('bias', None),
}

# NVIDIA's TorchScript names (TF scopes) -> torchvision names.
_NVIDIA_BLOCKS = {
    'conv': 'Conv2d_1a_3x3', 'conv_1': 'Conv2d_2a_3x3', 'conv_2': 'Conv2d_2b_3x3',
    'conv_3': 'Conv2d_3b_1x1', 'conv_4': 'Conv2d_4a_3x3',
    'mixed': 'Mixed_5b', 'mixed_1': 'Mixed_5c', 'mixed_2': 'Mixed_5d', 'mixed_3': 'Mixed_6a',
    'mixed_4': 'Mixed_6b', 'mixed_5': 'Mixed_6c', 'mixed_6': 'Mixed_6d', 'mixed_7': 'Mixed_6e',
    'mixed_8': 'Mixed_7a', 'mixed_9': 'Mixed_7b', 'mixed_10': 'Mixed_7c',
}
_NVIDIA_BRANCHES = {
    'A': {'conv': 'branch1x1', 'tower_conv': 'branch5x5_1', 'tower_conv_1': 'branch5x5_2',
          'tower_1_conv': 'branch3x3dbl_1', 'tower_1_conv_1': 'branch3x3dbl_2',
          'tower_1_conv_2': 'branch3x3dbl_3', 'tower_2_conv': 'branch_pool'},
    'B': {'conv': 'branch3x3', 'tower_conv': 'branch3x3dbl_1', 'tower_conv_1': 'branch3x3dbl_2',
          'tower_conv_2': 'branch3x3dbl_3'},
    'C': {'conv': 'branch1x1', 'tower_conv': 'branch7x7_1', 'tower_conv_1': 'branch7x7_2',
          'tower_conv_2': 'branch7x7_3', 'tower_1_conv': 'branch7x7dbl_1',
          'tower_1_conv_1': 'branch7x7dbl_2', 'tower_1_conv_2': 'branch7x7dbl_3',
          'tower_1_conv_3': 'branch7x7dbl_4', 'tower_1_conv_4': 'branch7x7dbl_5',
          'tower_2_conv': 'branch_pool'},
    'D': {'tower_conv': 'branch3x3_1', 'tower_conv_1': 'branch3x3_2',
          'tower_1_conv': 'branch7x7x3_1', 'tower_1_conv_1': 'branch7x7x3_2',
          'tower_1_conv_2': 'branch7x7x3_3', 'tower_1_conv_3': 'branch7x7x3_4'},
    'E': {'conv': 'branch1x1', 'tower_conv': 'branch3x3_1', 'tower_mixed_conv': 'branch3x3_2a',
          'tower_mixed_conv_1': 'branch3x3_2b', 'tower_1_conv': 'branch3x3dbl_1',
          'tower_1_conv_1': 'branch3x3dbl_2', 'tower_1_mixed_conv': 'branch3x3dbl_3a',
          'tower_1_mixed_conv_1': 'branch3x3dbl_3b', 'tower_2_conv': 'branch_pool'},
}
_BLOCK_KIND = {'Mixed_5b': 'A', 'Mixed_5c': 'A', 'Mixed_5d': 'A', 'Mixed_6a': 'B',
               'Mixed_6b': 'C', 'Mixed_6c': 'C', 'Mixed_6d': 'C', 'Mixed_6e': 'C',
               'Mixed_7a': 'D', 'Mixed_7b': 'E', 'Mixed_7c': 'E'}
_NVIDIA_LEAVES = {'weight': 'conv.weight', 'beta': 'bn.bias', 'mean': 'bn.running_mean',
                  'var': 'bn.running_var'}


def nvidia_to_torchvision(key: str) -> str | None:
  """``layers.mixed_9.tower_1.mixed.conv_1.beta`` -> ``Mixed_7b.branch3x3dbl_3b.bn.bias``.

  Nested (``tower.conv``) and flattened (``tower_conv``) scope spellings both map; None if the
  name is not part of the network.
  """
  parts = key.split('.')
  if parts[0] == 'output' and len(parts) == 2:
    return f'fc.{parts[1]}'
  if parts[0] != 'layers' or len(parts) < 3 or parts[1] not in _NVIDIA_BLOCKS:
    return None
  block, scope, leaf = _NVIDIA_BLOCKS[parts[1]], '_'.join(parts[2:-1]), parts[-1]
  if leaf not in _NVIDIA_LEAVES:
    return None
  if block.startswith('Conv2d'):
    return f'{block}.{_NVIDIA_LEAVES[leaf]}' if not scope else None
  branch = _NVIDIA_BRANCHES[_BLOCK_KIND[block]].get(scope)
  return f'{block}.{branch}.{_NVIDIA_LEAVES[leaf]}' if branch else None


def flax_path(key: str, detector: str = 'pytorch_fid'):
  """``(path, transform)``: the Flax parameter a state-dict tensor ``key`` becomes and the array
  transform on the way (e.g. OIHW -> HWIO); ``(None, None)`` for a name outside the network."""
  name = nvidia_to_torchvision(key) if detector == 'nvidia' else key
  parts = name.split('.') if name else []
  leaf = _LEAVES.get(tuple(parts[-2:]))
  if leaf is None:
    return None, None
  return tuple(parts[:-1]) + (leaf[0],), leaf[1] or (lambda v: v)


def convert_state_dict(state_dict) -> tuple[dict, str]:
  """``(params, detector)`` from a torch state dict given as ``{name: numpy array}``.

  Names are pytorch-fid's (torchvision's) or NVIDIA's (``layers.*``, ``output.*``; its batch
  norms have no scale, which becomes 1). Every tensor must map to exactly one parameter of the
  same shape and every parameter must be covered; otherwise a ValueError lists what is wrong.
  ``num_batches_tracked`` counters are skipped.
  """
  tensors = {k: np.asarray(v) for k, v in state_dict.items()
             if not k.endswith('num_batches_tracked')}
  detector = 'nvidia' if any(k.startswith('layers.') for k in tensors) else 'pytorch_fid'
  expected = param_shapes()
  flat, unknown, wrong = {}, [], {}
  for key, value in tensors.items():
    path, transform = flax_path(key, detector)
    if path not in expected or path in flat or path in wrong:
      unknown.append(key)
      continue
    value = transform(value)
    if value.shape != expected[path]:
      wrong[path] = f'{key} {tuple(value.shape)} (as Flax) instead of {expected[path]}'
      continue
    flat[path] = np.asarray(value, np.float32)
  if detector == 'nvidia':  # TF batch norm has no gamma
    for path, shape in expected.items():
      if path[-1] == 'scale' and path not in flat:
        flat[path] = np.ones(shape, np.float32)
  missing = ['.'.join(p) for p in expected if p not in flat and p not in wrong]
  if unknown or wrong or missing:
    problems = [(unknown, 'unrecognised'), (list(wrong.values()), 'of the wrong shape'),
                (missing, 'Flax parameters without a tensor')]
    raise ValueError(
        f'these are not FID Inception-v3 (2015-12-05) weights ({detector} naming): ' +
        '; '.join(f'{len(items)} {what}: {", ".join(items[:6])}{" ..." if len(items) > 6 else ""}'
                  for items, what in problems if items))
  return traverse_util.unflatten_dict(flat), detector


def read_torch_file(path: str) -> dict[str, np.ndarray]:
  """``{name: numpy array}`` of a torch file: a state dict (``.pth``) or a pickled TorchScript
  module (NVIDIA's ``.pkl``). Needs torch, imported only here."""
  try:
    import torch
  except ImportError as e:
    raise ImportError(
        f'reading {path} needs PyTorch once (pip install torch; the CPU build is enough) to '
        f'convert it into {path + CACHE_SUFFIX}; after that torch is not needed') from e
  if path.endswith('.pkl'):
    try:
      with open(path, 'rb') as f:
        loaded = pickle.load(f)
    except ModuleNotFoundError as e:
      raise ImportError(
          f'unpickling {path} needs the module {e.name!r}: put NVlabs/edm (or stylegan3) on '
          f'PYTHONPATH for this one conversion, or use the TorchScript inception-2015-12-05.pt '
          f'(StyleGAN2-ADA, clean-fid), which needs torch only') from e
  else:  # a state dict, or a TorchScript archive (torch.load hands it to torch.jit.load)
    loaded = torch.load(path, map_location='cpu', weights_only=False)
  if hasattr(loaded, 'state_dict'):
    loaded = loaded.state_dict()
  return {k: v.detach().cpu().numpy() for k, v in loaded.items()}


# ------------------------------------------------------------------------------------- loading


def missing_weights_message(path: str = '') -> str:
  where = (f'{path} does not exist. ' if path else
           f'No Inception weights were given and {cached_weights_path()} is not there. ')
  return (
      f'{where}FID needs the Inception-v3 2015-12-05 weights. Run\n'
      f'  {fetch.fetch_command("inception")}\n'
      f'(pytorch-fid\'s {PYTORCH_FID_FILE}, verified, into the asset cache), or get '
      f'{NVIDIA_FILE} (the detector of EDM/SiD/ECT/DMD2 numbers; {_NVIDIA_URL}) or '
      f'{PYTORCH_FID_FILE} ({_PYTORCH_FID_URL}) on a machine with internet, copy it here and '
      f'pass its path with --config.{CONFIG_KEY}=PATH or the environment variable '
      f'{ENV_VAR}=PATH. It is converted once to PATH{CACHE_SUFFIX} (needs torch that once).')


def cached_weights_path() -> str:
  """Where ``python -m fastgen.assets fetch inception`` puts pytorch-fid's file."""
  return os.path.join(fetch.cache_dir(), PYTORCH_FID_FILE)


def save_flax_weights(path: str, params, detector: str) -> None:
  tmp = path + '.tmp'
  with open(tmp, 'wb') as f:
    f.write(serialization.msgpack_serialize(
        {'format': _FORMAT, 'detector': detector, 'params': params}))
  os.replace(tmp, path)


def load_flax_weights(path: str) -> tuple[dict, str]:
  with open(path, 'rb') as f:
    try:
      state = serialization.msgpack_restore(f.read())
    except (ValueError, TypeError, msgpack.UnpackException):
      state = None
  if not isinstance(state, dict) or state.get('format') != _FORMAT:
    raise ValueError(f'{path} is not a fastgen Inception weight file; delete it to re-convert')
  params = state['params']
  shapes = {p: tuple(v.shape) for p, v in traverse_util.flatten_dict(params).items()}
  if shapes != param_shapes():
    raise ValueError(f'{path} does not hold the FID Inception-v3 parameters; delete it to '
                     f're-convert')
  return params, state['detector']


def load_inception(path: str = '') -> InceptionFeatures:
  """The FID feature extractor from ``path`` (else ``$FASTGEN_INCEPTION_WEIGHTS``, else the
  fetched file in the asset cache): NVIDIA's ``.pkl``, pytorch-fid's ``.pth`` or a converted
  ``.flax.msgpack``. The first load of a torch file writes ``<path>.flax.msgpack`` beside it
  (when the folder is writable)."""
  path = path or os.environ.get(ENV_VAR, '')
  if not path and os.path.exists(cached_weights_path()):
    path = cached_weights_path()
  if not path or not os.path.exists(path):
    raise FileNotFoundError(missing_weights_message(path))
  if path.endswith(CACHE_SUFFIX):
    return InceptionFeatures(*load_flax_weights(path))
  cache = path + CACHE_SUFFIX
  if os.path.exists(cache) and os.path.getmtime(cache) >= os.path.getmtime(path):
    return InceptionFeatures(*load_flax_weights(cache))
  params, detector = convert_state_dict(read_torch_file(path))
  try:
    save_flax_weights(cache, params, detector)
  except OSError as e:
    logging.warning('could not cache converted Inception weights at %s: %s', cache, e)
  return InceptionFeatures(params, detector)
