"""LPIPS with VGG-16 features (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features
as a Perceptual Metric", Eq. 1), as a pure function of weights read from a file.

  d(x, y) = sum_l 1 / (H_l W_l) sum_{h, w} || w_l ⊙ (f^l_hw(x) - f^l_hw(y)) ||_2^2,

where f^l are the channel-normalised (unit L2 norm per position) activations of VGG-16's
relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3 and w_l >= 0 the learned per-channel weights
(stored squared, as LPIPS's 1x1 convolutions ``lin{l}.model.1.weight`` apply them to the squared
differences). Inputs in [-1, 1] are shifted and scaled by LPIPS's ``ScalingLayer`` and resized
bilinearly to ``resolution`` (rfpp resizes to 224); grayscale images are repeated to 3 channels.

The weights are an ``.npz`` with arrays ``conv{k}/kernel`` [3, 3, C_in, C_out] (HWIO) and
``conv{k}/bias`` [C_out] for VGG-16's 13 convolutions k = 0..12 (torchvision's ``features``
convolutions in order, kernels transposed from OIHW), and ``lin{l}`` [C_l] for l = 0..4 (the LPIPS
v0.1 ``vgg.pth`` linear layers, flattened). Without a path, ``lpips-vgg16.npz`` in the asset cache
is used; ``python -m fastgen.assets fetch lpips-vgg`` downloads the two official files, which the
first load converts into it (reading them needs torch that once).

``pooling='average'`` is piq's LPIPS as 2-RF++ calls it (rfpp ``train.py``:
``piq.LPIPS(replace_pooling=True)`` on ``x * 0.5 + 0.5``; piq 0.8.0 ``piq/perceptual.py``): the
same taps, unit normalisation (eps 1e-10) and per-channel weighting of the squared differences
averaged over positions (``ContentLoss.forward``'s ``(d * w).mean(dim=[2, 3])`` summed over
channels and layers is LPIPS's bias-free 1x1 convolution followed by its spatial mean), with each
of VGG's 2x2 max pools replaced by a 2x2 average pool (``ContentLoss.replace_pooling``). piq's
input standardisation ``(x01 - mean) / std`` of x01 = (x + 1) / 2 with ImageNet's mean and std is
LPIPS's ``ScalingLayer`` exactly (SHIFT = 2 mean - 1, SCALE = 2 std), so it needs no option.
piq reads its linear weights from its own release file (``lpips_weights.pt``); fastgen uses
LPIPS v0.1's for both poolings (the two files were not compared).
"""

import os

import jax
import jax.numpy as jnp
import numpy as np

from fastgen.assets import fetch

CACHED_FILE = 'lpips-vgg16.npz'
VGG16_BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))  # (convolutions, channels)
SHIFT = np.array([-0.030, -0.088, -0.188], np.float32)
SCALE = np.array([0.458, 0.448, 0.450], np.float32)
POOLINGS = ('max', 'average')  # LPIPS's VGG-16; piq's replace_pooling=True


def expected_shapes() -> dict[str, tuple[int, ...]]:
  """Every array of a weights file and its shape."""
  shapes, c_in, k = {}, 3, 0
  for block, (num_convs, channels) in enumerate(VGG16_BLOCKS):
    for _ in range(num_convs):
      shapes[f'conv{k}/kernel'] = (3, 3, c_in, channels)
      shapes[f'conv{k}/bias'] = (channels,)
      c_in, k = channels, k + 1
    shapes[f'lin{block}'] = (channels,)
  return shapes


def weights_from_torch(vgg16: dict, lpips_lin: dict) -> dict[str, np.ndarray]:
  """The ``.npz`` layout from torchvision's VGG-16 state dict (``features.{i}.weight`` OIHW,
  ``features.{i}.bias``) and LPIPS v0.1's (``lin{l}.model.1.weight`` [1, C_l, 1, 1])."""
  convs = sorted({int(k.split('.')[1]) for k in vgg16 if k.startswith('features.')})
  weights = {}
  for k, index in enumerate(convs):
    weights[f'conv{k}/kernel'] = np.asarray(vgg16[f'features.{index}.weight']).transpose(2, 3, 1, 0)
    weights[f'conv{k}/bias'] = np.asarray(vgg16[f'features.{index}.bias'])
  for block in range(len(VGG16_BLOCKS)):
    weights[f'lin{block}'] = np.asarray(lpips_lin[f'lin{block}.model.1.weight']).reshape(-1)
  return {k: v.astype(np.float32) for k, v in weights.items()}


def _read_torch_state_dict(path: str) -> dict[str, np.ndarray]:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        f'converting {path} needs PyTorch once (pip install torch; the CPU build is enough) to '
        f'write {os.path.join(fetch.cache_dir(), CACHED_FILE)}; after that torch is not '
        f'needed') from e
  state = torch.load(path, map_location='cpu', weights_only=True)
  return {k: v.numpy() for k, v in state.items()}


def cached_weights() -> str:
  """``lpips-vgg16.npz`` in the asset cache, converted from the fetched files on first use."""
  target = os.path.join(fetch.cache_dir(), CACHED_FILE)
  if os.path.exists(target):
    return target
  try:
    vgg16, lpips_lin = (fetch.cached_path('lpips-vgg', f.name) for f in fetch.ASSETS['lpips-vgg'])
  except FileNotFoundError as e:
    raise ValueError(
        f'objective.metric (lpips, lpips_huber) needs objective.lpips_weights=<.npz of VGG-16 '
        f'and LPIPS weights> or the fetched weights ({e}); or use metric "pseudo_huber"') from e
  weights = weights_from_torch(_read_torch_state_dict(vgg16), _read_torch_state_dict(lpips_lin))
  partial = target + '.partial.npz'
  np.savez(partial, **weights)
  os.replace(partial, target)
  return target


def load_weights(path: str = '') -> dict[str, np.ndarray]:
  """The LPIPS-VGG weights of ``path`` (else the asset cache's, see the module docstring),
  checked against VGG-16."""
  path = path or cached_weights()
  with np.load(path) as f:
    weights = {k: np.asarray(f[k], np.float32) for k in f.files}
  for name, shape in expected_shapes().items():
    if name not in weights:
      raise ValueError(f'LPIPS weights {path} lack the array {name!r} of shape {shape}')
    if weights[name].shape != shape:
      raise ValueError(f'LPIPS weights {path}: {name!r} has shape {weights[name].shape}, '
                       f'expected {shape}')
  return {name: weights[name] for name in expected_shapes()}


def _pool(x, pooling: str):
  """VGG-16's 2x2 stride-2 pooling of x [B, H, W, C]: the maximum or the mean of each window."""
  if pooling == 'max':
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), 'VALID')
  if pooling == 'average':
    return jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), 'VALID') / 4
  raise ValueError(f'unknown LPIPS pooling {pooling!r}; known: {", ".join(POOLINGS)}')


def _features(weights, x, pooling: str = 'max'):
  """VGG-16 activations at the five LPIPS taps, with ``pooling`` between the blocks."""
  taps, k = [], 0
  for block, (num_convs, _) in enumerate(VGG16_BLOCKS):
    if block:
      x = _pool(x, pooling)
    for _ in range(num_convs):
      x = jax.lax.conv_general_dilated(x, weights[f'conv{k}/kernel'], (1, 1), 'SAME',
                                       dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
      x = jax.nn.relu(x + weights[f'conv{k}/bias'])
      k += 1
    taps.append(x)
  return taps


def lpips(weights, x, y, resolution: int = 224, pooling: str = 'max'):
  """Per-example LPIPS distance [B] between images x, y [B, H, W, C] in [-1, 1]; ``pooling``
  'max' is LPIPS's VGG-16, 'average' piq's (see the module docstring)."""
  if x.shape[-1] == 1:
    x, y = jnp.repeat(x, 3, axis=-1), jnp.repeat(y, 3, axis=-1)
  both = jnp.concatenate([x, y]).astype(jnp.float32)
  both = jax.image.resize(both, (both.shape[0], resolution, resolution, 3), 'bilinear')
  both = (both - SHIFT) / SCALE
  distance = 0.0
  for block, features in enumerate(_features(weights, both, pooling)):
    unit = features / (jnp.sqrt(jnp.sum(features**2, axis=-1, keepdims=True)) + 1e-10)
    fx, fy = jnp.split(unit, 2)
    distance = distance + jnp.mean(jnp.sum(weights[f'lin{block}'] * (fx - fy) ** 2, axis=-1),
                                   axis=(1, 2))
  return distance
