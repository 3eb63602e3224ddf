"""SongUNet: the DDPM++ / NCSN++ U-Net of Song et al. 2021 as re-implemented in EDM (Karras et al.
2022).

Mirrors ``SongUNet`` of EDM's ``training/networks.py`` with its standard decoder. The defaults are
the DDPM++ setting (positional noise embedding, standard encoder, ``channel_mult_noise=1``,
``resample_filter=[1,1]``), the configuration of EDM's CIFAR-10 DDPM++ ("VP") models (EDM
Table 7); ``embedding_type='fourier', channel_mult_noise=2, encoder_type='residual',
resample_filter=(1, 3, 3, 1)`` is NCSN++ (EDM's "VE" models). Images are NHWC.

Parameter names follow EDM's module names, with ``ModuleDict`` keys joined by an underscore:
EDM ``enc.32x32_block0.conv0.weight`` <-> Flax ``enc_32x32_block0/conv0/kernel`` (Linear weights
transposed, conv weights OIHW -> HWIO, GroupNorm ``weight`` -> ``scale``); NCSN++'s Fourier
frequencies are the parameter ``map_noise/freqs`` (no gradient). One deliberate difference:
``map_label`` has no bias, so the null label embeds as exactly zero; an EDM conditional checkpoint
imports exactly by folding its bias into ``map_layer0`` (b0 <- b0 + W0 b_label;
:mod:`fastgen.teachers.edm_import`). Attention has one head, as in EDM's SongUNet.

Sizes: EDM's CIFAR-10 config (``model_channels=128, channel_mult=(2, 2, 2), num_blocks=4,
attn_resolutions=(16,)``, 32x32x3) has 55,732,739 parameters unconditional (EDM's reported 55.73M
adds its 1,152-parameter ``map_augment``), plus 1,280 for ``map_label`` at 10 classes. The digits
config (``img_resolution=8, in_channels=1, model_channels=32, channel_mult=(1, 2), num_blocks=2,
attn_resolutions=(4,)``) has 1,032,353 and costs 16 GFLOP per forward+backward at batch 128
(about 0.25 s on 2 CPU cores; ``model_channels=16``: 260k parameters, 4.3 GFLOP, about 0.1 s).
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

SKIP_SCALE = np.sqrt(0.5)  # DDPM++ residual scaling (EDM: skip_scale=np.sqrt(0.5)).
NORM_EPS = 1e-6
PRODUCT_MIN_POSITIONS = 256  # GroupNorm's sums over positions as products on the CPU from 16x16 up.


def _xavier_uniform(gain: float = 1.0):
  """EDM ``weight_init('xavier_uniform') * gain``: U(+-gain sqrt(6 / (fan_in + fan_out)))."""
  return nn.initializers.variance_scaling(gain**2, 'fan_avg', 'uniform')


INIT = _xavier_uniform()              # EDM SongUNet ``init``.
INIT_ZERO = _xavier_uniform(1e-5)     # EDM SongUNet ``init_zero``: near-zero last layers.
INIT_ATTN = _xavier_uniform(np.sqrt(0.2))  # EDM SongUNet ``init_attn`` (qkv).


def positional_embedding(x, num_channels: int, max_positions: int = 10000, endpoint: bool = False):
  """Transformer timestep embedding [cos(x f_i), sin(x f_i)], f_i = max_positions^(-i / (n - e)).

  n = num_channels / 2, i = 0..n-1, e = 1 if ``endpoint`` else 0 (EDM ``PositionalEmbedding``;
  Vaswani et al. 2017, Sec. 3.5). x: [B] -> [B, num_channels], float32.
  """
  half = num_channels // 2
  freqs = jnp.arange(half, dtype=jnp.float32) / (half - (1 if endpoint else 0))
  freqs = (1.0 / max_positions) ** freqs
  x = jnp.outer(x.astype(jnp.float32), freqs)
  return jnp.concatenate([jnp.cos(x), jnp.sin(x)], axis=1)


def embed_times(noise_cond, embed):
  """``embed(noise_cond)`` for one time per example ([B]), or the concatenation of ``embed`` of
  each column for several ([B, k], e.g. MeanFlow's (t, t - r)); the dense layer that follows then
  sums one learned embedding per time."""
  if noise_cond.ndim == 1:
    return embed(noise_cond)
  return jnp.concatenate([embed(noise_cond[:, i]) for i in range(noise_cond.shape[1])], axis=1)


def _resample_kernel(resample_filter, channels: int, dtype):
  """EDM Conv2d's depthwise resampling filter f f^T / sum(f)^2, as an HWIO kernel [k, k, 1, C]."""
  f = np.asarray(resample_filter, np.float32)
  f = np.outer(f, f) / f.sum() ** 2
  return jnp.asarray(np.tile(f[:, :, None, None], (1, 1, 1, channels)), dtype)


def downsample(x, resample_filter=(1, 1), padding=None):
  """EDM Conv2d ``down=True``: depthwise conv with the filter, stride 2, padding (k - 1) // 2
  (``padding`` overrides it). [1, 1] is the 2x2 box filter: average pooling."""
  k = len(resample_filter)
  pad = (k - 1) // 2 if padding is None else padding
  if tuple(resample_filter) == (1, 1) and pad == 0:
    return nn.avg_pool(x, (2, 2), strides=(2, 2))
  return jax.lax.conv_general_dilated(
      x, _resample_kernel(resample_filter, x.shape[-1], x.dtype), (2, 2), ((pad, pad), (pad, pad)),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=x.shape[-1])


def upsample(x, resample_filter=(1, 1)):
  """EDM Conv2d ``up=True``: transposed depthwise conv with 4 f f^T / sum(f)^2, stride 2, padding
  (k - 1) // 2. [1, 1] is nearest-neighbour upsampling."""
  k = len(resample_filter)
  if tuple(resample_filter) == (1, 1):
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
  pad = k - 1 - (k - 1) // 2  # a transposed conv's padding p is k - 1 - p on the dilated input
  return jax.lax.conv_general_dilated(
      x, 4 * _resample_kernel(resample_filter, x.shape[-1], x.dtype), (1, 1),
      ((pad, pad), (pad, pad)), lhs_dilation=(2, 2), dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      feature_group_count=x.shape[-1])


def pixel_norm(x, eps: float = 1e-8):
  """pnorm(x) = x / sqrt(mean_c(x_c^2) + eps), over the channel (last) axis (Karras et al. 2018,
  "Progressive Growing of GANs", §4.2); the normalization sCM applies to AdaGN's scale and shift
  (Lu & Song 2024, §4.1, "adaptive double normalization")."""
  x32 = x.astype(jnp.float32)
  return (x32 * jax.lax.rsqrt(jnp.mean(x32**2, axis=-1, keepdims=True) + eps)).astype(x.dtype)


def group_norm(channels: int, dtype, name: str, eps: float = NORM_EPS) -> 'GroupNorm':
  """EDM GroupNorm: min(32, C // 4) groups, eps 1e-6 in SongUNet; statistics in float32."""
  return GroupNorm(num_groups=min(32, channels // 4), epsilon=eps, dtype=dtype,
                   param_dtype=jnp.float32, name=name)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _spread_by_product(v, positions: int):
  return jnp.broadcast_to(v[:, None, :], (v.shape[0], positions, v.shape[1]))


@_spread_by_product.defjvp
def _spread_by_product_jvp(positions, primals, tangents):
  # The tangent broadcast as a batched outer product with ones, so that its transpose, a sum over
  # the positions, is a batched matrix-vector product with ones summed in float32.
  (v,), (v_dot,) = primals, tangents
  ones = jnp.ones((v.shape[0], 1, positions), v_dot.dtype)
  v_dot = jnp.einsum('nkp,nkc->npc', ones, v_dot[:, None, :], preferred_element_type=jnp.float32)
  return _spread_by_product(v, positions), v_dot.astype(v.dtype)


def _sum_positions_by_product(x):
  """[N, P, C] -> [N, C], summed over the positions P in float32 as a product with ones."""
  ones = jnp.ones((x.shape[0], 1, x.shape[1]), x.dtype)
  return jnp.einsum('nkp,npc->nc', ones, x, preferred_element_type=jnp.float32)


class GroupNorm(nn.GroupNorm):
  """flax's ``nn.GroupNorm`` (Wu & He 2018), with its sums over positions as products on the CPU.

  On the CPU, for feature maps of at least ``PRODUCT_MIN_POSITIONS`` positions, every sum over
  positions (the statistics', and in the backward pass the scale gradient and the statistics'
  cotangents) is a batched matrix-vector product with ones, and the bias is added by
  ``add_channel_bias`` (its gradient a product with ones too): XLA:CPU fuses the
  elementwise backward chain into reductions over the major axes, and those fused reductions are
  slow (the CIFAR-10 SongUNet step at ``model_channels=32``, batch 16: 1.36 s against 1.66 s with
  flax's GroupNorm, side by side; docs/performance.md). The statistics (float32, Var = E[x^2] -
  E[x]^2 clipped at 0), the formula y = (x - mean) * rsqrt(var + eps) * scale + bias and the
  parameters are flax's. The products come from ``einsum`` with ones and from the transpose of a
  custom JVP (a broadcast whose tangent is an outer product with ones), so forward-mode
  differentiation works too. On smaller maps (the digits U-Net's 8x8 and 4x4) the products
  measured slower than flax's reductions in the network's step, so there, on other backends and
  for options other than ``group_norm``'s, this is flax's GroupNorm itself.
  """

  @nn.compact
  def __call__(self, x, *, mask=None):
    n, c, groups = x.shape[0], x.shape[-1], self.num_groups
    positions = x.size // n // c
    if (jax.default_backend() != 'cpu' or positions < PRODUCT_MIN_POSITIONS or mask is not None
        or self.group_size is not None or self.reduction_axes is not None
        or self.axis_name is not None or not (self.use_scale and self.use_bias)):
      return super().__call__(x, mask=mask)
    scale = self.param('scale', self.scale_init, (c,), self.param_dtype)
    bias = self.param('bias', self.bias_init, (c,), self.param_dtype)
    x3 = x.reshape(n, positions, c).astype(jnp.float32)

    def group_mean(v):  # [N, P, C] -> [N, C]: each channel's group's mean over the positions.
      m = _sum_positions_by_product(v).reshape(n, groups, -1).sum(-1) / (positions * c // groups)
      return jnp.repeat(m, c // groups, axis=1)

    mean = group_mean(x3)
    var = jnp.maximum(group_mean(x3 * x3) - mean**2, 0.0)
    mul = jax.lax.rsqrt(var + self.epsilon) * scale
    spread = lambda v: _spread_by_product(jnp.broadcast_to(v, (n, c)), positions)
    y = add_channel_bias((x3 - spread(mean)) * spread(mul), bias)
    dtype = self.dtype or jnp.promote_types(x.dtype, self.param_dtype)
    return y.reshape(x.shape).astype(dtype)


@jax.custom_jvp
def _add_bias_by_product(y, bias):
  return y + bias


@_add_bias_by_product.defjvp
def _add_bias_by_product_jvp(primals, tangents):
  # The bias tangent broadcast as an outer product with ones, so that its transpose, the bias
  # gradient, is a matrix-vector product with ones summed in float32.
  (y, bias), (y_dot, bias_dot) = primals, tangents
  ones = jnp.ones((y.size // y.shape[-1], 1), bias_dot.dtype)
  bias_dot = jnp.dot(ones, bias_dot[None, :], preferred_element_type=jnp.float32)
  return y + bias, y_dot + bias_dot.reshape(y.shape).astype(y_dot.dtype)


def add_channel_bias(y, bias):
  """y + bias over the last (channel) axis.

  On the CPU the bias gradient, a sum of the output gradient over every batch and spatial
  position, is taken as a matrix-vector product with ones: XLA:CPU fuses the whole elementwise
  backward chain that produces the gradient into a reduction, and that fused reduction over the
  major axes is slow (the CIFAR-10 SongUNet step at ``model_channels=32``, batch 16: 1.9 s
  against 2.5 s, side by side; docs/performance.md). The product comes from the transpose of a
  custom JVP (the bias tangent broadcast as an outer product with ones), so forward-mode
  differentiation works too. Other backends differentiate ``y + bias`` as written.
  """
  if jax.default_backend() == 'cpu':
    return _add_bias_by_product(y, bias)
  return y + bias


def _tap_table(height: int, width: int, kernel_size: int, pad: int) -> np.ndarray:
  """[P_in, P_out, k * k]: 1 where input position P_in feeds output position P_out through kernel
  tap (i, j) (flattened row-major) of a stride-1 convolution with zero padding ``pad``."""
  out_h, out_w = height + 2 * pad - kernel_size + 1, width + 2 * pad - kernel_size + 1
  table = np.zeros((height * width, out_h * out_w, kernel_size * kernel_size), np.float32)
  for oi, oj, i, j in np.ndindex(out_h, out_w, kernel_size, kernel_size):
    yi, xj = oi + i - pad, oj + j - pad
    if 0 <= yi < height and 0 <= xj < width:
      table[yi * width + xj, oi * out_w + oj, i * kernel_size + j] = 1
  return table


def conv_as_matrix(x, kernel, pad: int):
  """The stride-1 convolution of NHWC ``x`` with HWIO ``kernel`` and zero padding ``pad`` as one
  matrix product: x [N, H W C] @ M [H W C, H' W' O], M holding each kernel tap where an input
  position feeds an output position (each entry is one tap or zero, so M is exact in any dtype).
  It costs H W / k^2 times the convolution's multiply-adds, fewer when the map has no more
  positions than the kernel has taps."""
  n, height, width, channels = x.shape
  k, features = kernel.shape[0], kernel.shape[-1]
  table = _tap_table(height, width, k, pad)
  matrix = jnp.einsum('pqt,tco->pcqo', table.astype(kernel.dtype),
                      kernel.reshape(k * k, channels, features))
  out_h, out_w = height + 2 * pad - k + 1, width + 2 * pad - k + 1
  y = x.reshape(n, -1) @ matrix.reshape(height * width * channels, -1)
  return y.reshape(n, out_h, out_w, features)


class Conv2d(nn.Module):
  """``nn.Conv`` for NHWC images with 'same'-style zero padding ``pad``: the same parameters
  (``kernel`` HWIO, ``bias``) and outputs, with the bias added by :func:`add_channel_bias`.

  On the CPU a feature map with no more positions than the kernel has taps (the digits U-Net's
  2x2 level under 3x3 kernels) is convolved by :func:`conv_as_matrix`, which has fewer
  multiply-adds there: XLA:CPU's convolution of a [1024, 2, 2, 32] batch took 2.2 ms forward,
  the matrix product 0.37 ms, and the digits sampler's Heun steps 1.17x less time, for about
  0.5 GB more peak memory while compiling the SiD step (docs/performance.md). Other backends and
  larger maps convolve."""
  features: int
  kernel_size: int
  pad: int
  dtype: Any
  kernel_init: Any
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', self.kernel_init,
                        (self.kernel_size, self.kernel_size, x.shape[-1], self.features),
                        self.param_dtype)
    bias = self.param('bias', nn.initializers.zeros, (self.features,), self.param_dtype)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    if (jax.default_backend() == 'cpu' and self.kernel_size > 1
        and x.shape[1] * x.shape[2] <= self.kernel_size**2):
      y = conv_as_matrix(x, kernel, self.pad)
    else:
      y = jax.lax.conv_general_dilated(x, kernel, (1, 1), ((self.pad, self.pad),) * 2,
                                       dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return add_channel_bias(y, bias)


def conv(features: int, kernel: int, dtype, name: str, init=INIT, pad=None) -> Conv2d:
  """EDM Conv2d without resampling: zero padding ``pad`` (default: 'same'), zero bias."""
  pad = kernel // 2 if pad is None else pad
  return Conv2d(features, kernel, pad, dtype, init, name=name)


class UNetBlock(nn.Module):
  """EDM ``UNetBlock``; the defaults are SongUNet's (adaptive_scale=False, resample_proj=True,
  skip_scale sqrt(1/2), eps 1e-6, one head), ADM sets the others (fastgen.networks.adm).

  x <- (conv1(dropout(silu(norm1'(conv0(silu(norm0(x))), emb)))) + skip(x)) skip_scale, where
  norm1'(h, emb) = norm1(h + affine(emb)), or with ``adaptive_scale`` (scale, shift) =
  affine(emb) and norm1'(h, emb) = shift + norm1(h) (scale + 1), or with ``double_norm`` (scale,
  shift) = affine(emb) and norm1'(h, emb) = norm1(h) pnorm(scale) + pnorm(shift) (sCM's adaptive
  double normalization, :func:`pixel_norm`). Then, with ``num_heads > 0``,
  x <- (proj(attention(qkv(norm2(x)))) + x) skip_scale. conv0 and skip resample (``up`` /
  ``down``) before convolving; skip is a 1x1 conv if ``resample_proj`` or the channels change,
  else the resampling alone.
  """
  out_channels: int
  up: bool = False
  down: bool = False
  num_heads: int = 0
  dropout: float = 0.0
  dtype: Any = jnp.float32
  resample_filter: tuple = (1, 1)
  adaptive_scale: bool = False
  double_norm: bool = False
  resample_proj: bool = True
  skip_scale: float = SKIP_SCALE
  eps: float = NORM_EPS
  kernel_init: Any = INIT
  zero_init: Any = INIT_ZERO
  attn_init: Any = INIT_ATTN

  @nn.compact
  def __call__(self, x, emb, train: bool):
    in_channels = x.shape[-1]
    if self.up:
      resample = lambda h: upsample(h, self.resample_filter)
    elif self.down:
      resample = lambda h: downsample(h, self.resample_filter)
    else:
      resample = lambda h: h
    norm = lambda channels, name: group_norm(channels, self.dtype, name, self.eps)
    orig = x
    x = nn.silu(norm(in_channels, 'norm0')(x))
    x = conv(self.out_channels, 3, self.dtype, 'conv0', self.kernel_init)(resample(x))
    if self.adaptive_scale and self.double_norm:
      raise ValueError('UNetBlock: adaptive_scale and double_norm are exclusive')
    scale_shift = self.adaptive_scale or self.double_norm
    affine = nn.Dense(self.out_channels * (2 if scale_shift else 1),
                      kernel_init=self.kernel_init,
                      bias_init=nn.initializers.zeros, dtype=self.dtype, param_dtype=jnp.float32,
                      name='affine')(emb)[:, None, None, :]
    if self.double_norm:
      scale, shift = jnp.split(affine, 2, axis=-1)
      x = nn.silu(norm(self.out_channels, 'norm1')(x) * pixel_norm(scale) + pixel_norm(shift))
    elif self.adaptive_scale:
      scale, shift = jnp.split(affine, 2, axis=-1)
      x = nn.silu(shift + norm(self.out_channels, 'norm1')(x) * (scale + 1))
    else:
      x = nn.silu(norm(self.out_channels, 'norm1')(x + affine))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = conv(self.out_channels, 3, self.dtype, 'conv1', self.zero_init)(x)
    if self.out_channels != in_channels or self.up or self.down:
      orig = resample(orig)
      if self.resample_proj or self.out_channels != in_channels:
        orig = conv(self.out_channels, 1, self.dtype, 'skip', self.kernel_init)(orig)
    x = (x + orig) * self.skip_scale

    if self.num_heads:
      b, h, w, c = x.shape
      qkv = conv(3 * c, 1, self.dtype, 'qkv', self.attn_init)(norm(c, 'norm2')(x))
      # EDM's channel layout: [heads, c / heads, (q, k, v)].
      qkv = qkv.reshape(b, h * w, self.num_heads, c // self.num_heads, 3)
      q, k, v = qkv[..., 0], qkv[..., 1], qkv[..., 2]
      logits = jnp.einsum('bqnc,bknc->bnqk', q.astype(jnp.float32), k.astype(jnp.float32))
      weights = jax.nn.softmax(logits / np.sqrt(c // self.num_heads), axis=-1).astype(v.dtype)
      a = jnp.einsum('bnqk,bknc->bqnc', weights, v).reshape(b, h, w, c)
      x = (conv(c, 1, self.dtype, 'proj', self.zero_init)(a) + x) * self.skip_scale
    return x


def decoder(block, x, skips, emb, train, *, img_resolution, model_channels, channel_mult,
            num_blocks, attention):
  """The decoder of EDM's ``SongUNet`` and ``DhariwalUNet``, called inside a network's compact
  ``__call__`` with its ``block(out_channels, name, attention=False, **kw)`` factory. Per level,
  coarsest first: two blocks (``in0`` with attention, ``in1``) or an up-sampling block, then
  ``num_blocks + 1`` blocks each fed [x, skip] (skips popped from the encoder's list), where
  block ``idx`` at resolution ``res`` attends if ``attention(res, idx)``."""
  for level, mult in reversed(list(enumerate(channel_mult))):
    res = img_resolution >> level
    if level == len(channel_mult) - 1:
      x = block(x.shape[-1], f'dec_{res}x{res}_in0', attention=True)(x, emb, train)
      x = block(x.shape[-1], f'dec_{res}x{res}_in1')(x, emb, train)
    else:
      x = block(x.shape[-1], f'dec_{res}x{res}_up', up=True)(x, emb, train)
    for idx in range(num_blocks + 1):
      x = jnp.concatenate([x, skips.pop()], axis=-1)
      x = block(model_channels * mult, f'dec_{res}x{res}_block{idx}',
                attention=attention(res, idx))(x, emb, train)
  return x


class FourierEmbedding(nn.Module):
  """NCSN++ noise embedding [cos(2 pi f_i x), sin(2 pi f_i x)] with fixed random f_i ~ N(0, 16^2)
  (EDM ``FourierEmbedding``; Tancik et al. 2020). The frequencies are a parameter that receives
  no gradient, as EDM's buffer."""
  num_channels: int
  scale: float = 16.0

  @nn.compact
  def __call__(self, x):
    freqs = self.param('freqs', lambda key, shape: self.scale * jax.random.normal(key, shape),
                       (self.num_channels // 2,))
    x = jnp.outer(x.astype(jnp.float32), 2 * np.pi * jax.lax.stop_gradient(freqs))
    return jnp.concatenate([jnp.cos(x), jnp.sin(x)], axis=1)


class SongUNet(nn.Module):
  """DDPM++ / NCSN++ U-Net F(x, noise_cond, labels) (Song et al. 2021; EDM ``SongUNet``, Karras et
  al. 2022).

  Mapping: emb = silu(map_layer1(silu(map_layer0(swap(e(noise_cond)) + map_label(y))))), with e
  the positional (DDPM++) or Fourier (NCSN++) embedding of ``model_channels * channel_mult_noise``
  channels, swap its [cos, sin] halves to [sin, cos], and y = sqrt(K) one_hot(labels, K) (the null
  label K gives y = 0). Encoder per level: a 3x3 conv (first level) or a down-sampling block
  (with ``encoder_type='residual'``, NCSN++, followed by x <- aux <- (x + aux_residual(aux)) /
  sqrt(2), aux_residual a 3x3 conv fused with down-sampling, aux starting as the input image),
  then ``num_blocks`` blocks; every output is a skip. Decoder per level, coarsest first: two blocks
  (``in0`` with attention, ``in1``) or an up-sampling block, then ``num_blocks + 1`` blocks each
  fed [x, skip]; the finest level ends in aux_norm -> silu -> aux_conv. Attention at
  ``attn_resolutions``; resampling with ``resample_filter`` ([1, 1] DDPM++, [1, 3, 3, 1] NCSN++).
  Labels are ignored when ``num_classes=0``. Returns float32 of x's shape with ``out_channels``.
  ``noise_cond`` is [B], or [B, k] for k time inputs, whose embeddings are concatenated
  (:func:`embed_times`). ``double_norm=True`` replaces every block's additive embedding by sCM's
  adaptive double normalization, norm1(h) pnorm(scale) + pnorm(shift) with (scale, shift) =
  affine(emb) (Lu & Song 2024, §4.1; :class:`UNetBlock`); the default False is EDM's network.
  """
  img_resolution: int
  in_channels: int
  out_channels: int | None = None
  model_channels: int = 128
  channel_mult: tuple = (1, 2, 2, 2)
  channel_mult_emb: int = 4
  num_blocks: int = 4
  attn_resolutions: tuple = (16,)
  dropout: float = 0.10
  num_classes: int = 0
  embedding_type: str = 'positional'  # 'positional' (DDPM++) | 'fourier' (NCSN++)
  channel_mult_noise: int = 1         # noise embedding / model_channels: 1 DDPM++, 2 NCSN++
  encoder_type: str = 'standard'      # 'standard' (DDPM++) | 'residual' (NCSN++)
  resample_filter: tuple = (1, 1)     # (1, 1) DDPM++, (1, 3, 3, 1) NCSN++
  double_norm: bool = False           # sCM's adaptive double normalization in every block
  dtype: Any = jnp.float32
  remat: bool = False  # recompute each block's activations in the backward pass (less memory)

  @nn.compact
  def __call__(self, x, noise_cond, labels=None, train: bool = False):
    expected = (self.img_resolution, self.img_resolution, self.in_channels)
    if x.shape[1:] != expected:
      raise ValueError(f'SongUNet expects NHWC images of shape [B, {", ".join(map(str, expected))}]'
                       f', got {x.shape}')
    if self.embedding_type not in ('positional', 'fourier'):
      raise ValueError(f'SongUNet embedding_type must be positional or fourier, '
                       f'got {self.embedding_type!r}')
    if self.encoder_type not in ('standard', 'residual'):
      raise ValueError(f'SongUNet encoder_type must be standard or residual, '
                       f'got {self.encoder_type!r}')
    emb_channels = self.model_channels * self.channel_mult_emb
    noise_channels = self.model_channels * self.channel_mult_noise
    out_channels = self.out_channels or self.in_channels
    dense = lambda features, name: nn.Dense(
        features, kernel_init=INIT, bias_init=nn.initializers.zeros, dtype=self.dtype,
        param_dtype=jnp.float32, name=name)
    block_cls = nn.remat(UNetBlock, static_argnums=(3,)) if self.remat else UNetBlock  # train
    block = lambda out_channels, name, attention=False, **kw: block_cls(
        out_channels, num_heads=int(attention), dropout=self.dropout, dtype=self.dtype,
        resample_filter=tuple(self.resample_filter), double_norm=self.double_norm, name=name,
        **kw)

    # Mapping. EDM swaps the halves of its noise embedding to [sin, cos].
    if self.embedding_type == 'positional':
      embed = lambda c: positional_embedding(c, noise_channels, endpoint=True)
    else:
      embed = FourierEmbedding(noise_channels, name='map_noise')
    emb = embed_times(noise_cond, lambda c: jnp.concatenate(jnp.split(embed(c), 2, axis=1)[::-1],
                                                            axis=1))
    if self.num_classes:
      if labels is None:
        labels = jnp.full(x.shape[:1], self.num_classes, jnp.int32)
      onehot = jax.nn.one_hot(labels, self.num_classes) * np.sqrt(self.num_classes)
      emb = emb + nn.Dense(emb.shape[-1], use_bias=False, kernel_init=INIT, dtype=self.dtype,
                           param_dtype=jnp.float32, name='map_label')(onehot)
    emb = nn.silu(dense(emb_channels, 'map_layer0')(emb))
    emb = nn.silu(dense(emb_channels, 'map_layer1')(emb))

    # Encoder.
    skips, aux = [], x
    for level, mult in enumerate(self.channel_mult):
      res = self.img_resolution >> level
      if level == 0:
        x = conv(self.model_channels, 3, self.dtype, f'enc_{res}x{res}_conv')(x)
      else:
        x = block(x.shape[-1], f'enc_{res}x{res}_down', down=True)(x, emb, train)
        if self.encoder_type == 'residual':  # EDM Conv2d(kernel=3, down, fused_resample=True)
          pad = 1 + (len(self.resample_filter) - 1) // 2
          aux = conv(x.shape[-1], 3, self.dtype, f'enc_{res}x{res}_aux_residual', pad=pad)(aux)
          x = aux = (x + downsample(aux, self.resample_filter, padding=0)) / np.sqrt(2)
      skips.append(x)
      for idx in range(self.num_blocks):
        x = block(self.model_channels * mult, f'enc_{res}x{res}_block{idx}',
                  attention=res in self.attn_resolutions)(x, emb, train)
        skips.append(x)
      self.sow('intermediates', 'level_features', x)  # each resolution, for per-level heads
    self.sow('intermediates', 'features', x)  # the bottleneck, for discriminators on this network

    # Decoder: attention in the last block of a level at ``attn_resolutions``.
    x = decoder(block, x, skips, emb, train, img_resolution=self.img_resolution,
                model_channels=self.model_channels, channel_mult=self.channel_mult,
                num_blocks=self.num_blocks,
                attention=lambda res, idx: idx == self.num_blocks and res in self.attn_resolutions)
    x = nn.silu(group_norm(x.shape[-1], self.dtype, f'dec_{self.img_resolution}x'
                            f'{self.img_resolution}_aux_norm')(x))
    x = conv(out_channels, 3, self.dtype,
              f'dec_{self.img_resolution}x{self.img_resolution}_aux_conv', INIT_ZERO)(x)
    return x.astype(jnp.float32)
