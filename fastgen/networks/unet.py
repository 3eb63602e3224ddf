"""SongUNet: the DDPM++ U-Net of Song et al. 2021 as re-implemented in EDM (Karras et al. 2022).

Mirrors ``SongUNet`` of EDM's ``training/networks.py`` in its DDPM++ setting (positional noise
embedding, standard encoder and decoder, ``channel_mult_noise=1``, ``resample_filter=[1,1]``): the
configuration of EDM's CIFAR-10 DDPM++ models (EDM Table 7). Images are NHWC.

Parameter names follow EDM's module names, with ``ModuleDict`` keys joined by an underscore:
EDM ``enc.32x32_block0.conv0.weight`` <-> Flax ``enc_32x32_block0/conv0/kernel`` (Linear weights
transposed, conv weights OIHW -> HWIO, GroupNorm ``weight`` -> ``scale``). ``map_noise`` has no
parameters. One deliberate difference: ``map_label`` has no bias, so the null label embeds as
exactly zero; an EDM conditional checkpoint imports exactly by folding its bias into
``map_layer0`` (b0 <- b0 + W0 b_label). Attention has one head, as in EDM's SongUNet.

Sizes: EDM's CIFAR-10 config (``model_channels=128, channel_mult=(2, 2, 2), num_blocks=4,
attn_resolutions=(16,)``, 32x32x3) has 55,732,739 parameters unconditional (EDM's reported 55.73M
adds its 1,152-parameter ``map_augment``), plus 1,280 for ``map_label`` at 10 classes. The digits
config (``img_resolution=8, in_channels=1, model_channels=32, channel_mult=(1, 2), num_blocks=2,
attn_resolutions=(4,)``) has 1,032,353 and costs 16 GFLOP per forward+backward at batch 128
(about 0.25 s on 2 CPU cores; ``model_channels=16``: 260k parameters, 4.3 GFLOP, about 0.1 s).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

SKIP_SCALE = np.sqrt(0.5)  # DDPM++ residual scaling (EDM: skip_scale=np.sqrt(0.5)).
NORM_EPS = 1e-6


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


def _downsample(x):
  """EDM Conv2d ``down=True`` with resample_filter [1,1]: 2x2 box filter, stride 2."""
  return nn.avg_pool(x, (2, 2), strides=(2, 2))


def _upsample(x):
  """EDM Conv2d ``up=True`` with resample_filter [1,1]: transposed 2x2 box = nearest neighbour."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def _group_norm(channels: int, dtype, name: str) -> nn.GroupNorm:
  """EDM GroupNorm: min(32, C // 4) groups, eps 1e-6 in SongUNet; statistics in float32."""
  return nn.GroupNorm(num_groups=min(32, channels // 4), epsilon=NORM_EPS, dtype=dtype,
                      param_dtype=jnp.float32, name=name)


def _conv(features: int, kernel: int, dtype, name: str, init=INIT) -> nn.Conv:
  """EDM Conv2d without resampling: 'same' zero padding, zero bias."""
  pad = kernel // 2
  return nn.Conv(features, (kernel, kernel), padding=((pad, pad), (pad, pad)), kernel_init=init,
                 bias_init=nn.initializers.zeros, dtype=dtype, param_dtype=jnp.float32, name=name)


class UNetBlock(nn.Module):
  """EDM ``UNetBlock`` with DDPM++ settings (adaptive_scale=False, resample_proj=True, one head).

  x <- (conv1(dropout(silu(norm1(conv0(silu(norm0(x))) + affine(emb))))) + skip(x)) sqrt(1/2),
  then optionally x <- (proj(attention(qkv(norm2(x)))) + x) sqrt(1/2). conv0 and skip resample
  (average-pool down / nearest up) before convolving.
  """
  out_channels: int
  up: bool = False
  down: bool = False
  attention: bool = False
  num_heads: int = 1
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, emb, train: bool):
    in_channels = x.shape[-1]
    resample = _upsample if self.up else _downsample if self.down else (lambda h: h)
    orig = x
    x = nn.silu(_group_norm(in_channels, self.dtype, 'norm0')(x))
    x = _conv(self.out_channels, 3, self.dtype, 'conv0')(resample(x))
    shift = nn.Dense(self.out_channels, kernel_init=INIT, bias_init=nn.initializers.zeros,
                     dtype=self.dtype, param_dtype=jnp.float32, name='affine')(emb)
    x = nn.silu(_group_norm(self.out_channels, self.dtype, 'norm1')(x + shift[:, None, None, :]))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = _conv(self.out_channels, 3, self.dtype, 'conv1', INIT_ZERO)(x)
    if self.out_channels != in_channels or self.up or self.down:
      orig = _conv(self.out_channels, 1, self.dtype, 'skip')(resample(orig))
    x = (x + orig) * SKIP_SCALE

    if self.attention:
      b, h, w, c = x.shape
      qkv = _conv(3 * c, 1, self.dtype, 'qkv', INIT_ATTN)(
          _group_norm(c, self.dtype, 'norm2')(x))
      # EDM's channel layout: [heads, c / heads, (q, k, v)].
      qkv = qkv.reshape(b, h * w, self.num_heads, c // self.num_heads, 3)
      q, k, v = qkv[..., 0], qkv[..., 1], qkv[..., 2]
      logits = jnp.einsum('bqnc,bknc->bnqk', q.astype(jnp.float32), k.astype(jnp.float32))
      weights = jax.nn.softmax(logits / np.sqrt(c // self.num_heads), axis=-1).astype(v.dtype)
      a = jnp.einsum('bnqk,bknc->bqnc', weights, v).reshape(b, h, w, c)
      x = (_conv(c, 1, self.dtype, 'proj', INIT_ZERO)(a) + x) * SKIP_SCALE
    return x


class SongUNet(nn.Module):
  """DDPM++ U-Net F(x, noise_cond, labels) (Song et al. 2021; EDM ``SongUNet``, Karras et al. 2022).

  Mapping: emb = silu(map_layer1(silu(map_layer0([sin, cos](noise_cond) + map_label(y))))), with
  y = sqrt(K) one_hot(labels, K) (the null label K gives y = 0). Encoder per level: a 3x3 conv
  (first level) or a down-sampling block, then ``num_blocks`` blocks; every output is a skip.
  Decoder per level, coarsest first: two blocks (``in0`` with attention, ``in1``) or an up-sampling
  block, then ``num_blocks + 1`` blocks each fed [x, skip]; the finest level ends in aux_norm ->
  silu -> aux_conv. Attention at ``attn_resolutions``. Labels are ignored when ``num_classes=0``.
  Returns float32 of x's shape with ``out_channels``.
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
  dtype: Any = jnp.float32
  remat: bool = False  # recompute each block's activations in the backward pass (less memory)

  @nn.compact
  def __call__(self, x, noise_cond, labels=None, train: bool = False):
    expected = (self.img_resolution, self.img_resolution, self.in_channels)
    if x.shape[1:] != expected:
      raise ValueError(f'SongUNet expects NHWC images of shape [B, {", ".join(map(str, expected))}]'
                       f', got {x.shape}')
    emb_channels = self.model_channels * self.channel_mult_emb
    out_channels = self.out_channels or self.in_channels
    dense = lambda features, name: nn.Dense(
        features, kernel_init=INIT, bias_init=nn.initializers.zeros, dtype=self.dtype,
        param_dtype=jnp.float32, name=name)
    block_cls = nn.remat(UNetBlock, static_argnums=(3,)) if self.remat else UNetBlock  # train
    block = lambda out_channels, name, **kw: block_cls(
        out_channels, dropout=self.dropout, dtype=self.dtype, name=name, **kw)

    # Mapping. EDM swaps the halves of its positional embedding to [sin, cos].
    emb = positional_embedding(noise_cond, self.model_channels, endpoint=True)
    emb = jnp.concatenate(jnp.split(emb, 2, axis=1)[::-1], axis=1)
    if self.num_classes:
      if labels is None:
        labels = jnp.full(x.shape[:1], self.num_classes, jnp.int32)
      onehot = jax.nn.one_hot(labels, self.num_classes) * np.sqrt(self.num_classes)
      emb = emb + nn.Dense(self.model_channels, use_bias=False, kernel_init=INIT, dtype=self.dtype,
                           param_dtype=jnp.float32, name='map_label')(onehot)
    emb = nn.silu(dense(emb_channels, 'map_layer0')(emb))
    emb = nn.silu(dense(emb_channels, 'map_layer1')(emb))

    # Encoder.
    skips = []
    for level, mult in enumerate(self.channel_mult):
      res = self.img_resolution >> level
      if level == 0:
        x = _conv(self.model_channels, 3, self.dtype, f'enc_{res}x{res}_conv')(x)
      else:
        x = block(x.shape[-1], f'enc_{res}x{res}_down', down=True)(x, emb, train)
      skips.append(x)
      for idx in range(self.num_blocks):
        x = block(self.model_channels * mult, f'enc_{res}x{res}_block{idx}',
                  attention=res in self.attn_resolutions)(x, emb, train)
        skips.append(x)
    self.sow('intermediates', 'features', x)  # the bottleneck, for discriminators on this network

    # Decoder.
    for level, mult in reversed(list(enumerate(self.channel_mult))):
      res = self.img_resolution >> level
      if level == len(self.channel_mult) - 1:
        x = block(x.shape[-1], f'dec_{res}x{res}_in0', attention=True)(x, emb, train)
        x = block(x.shape[-1], f'dec_{res}x{res}_in1')(x, emb, train)
      else:
        x = block(x.shape[-1], f'dec_{res}x{res}_up', up=True)(x, emb, train)
      for idx in range(self.num_blocks + 1):
        x = jnp.concatenate([x, skips.pop()], axis=-1)
        x = block(self.model_channels * mult, f'dec_{res}x{res}_block{idx}',
                  attention=idx == self.num_blocks and res in self.attn_resolutions)(x, emb, train)
    x = nn.silu(_group_norm(x.shape[-1], self.dtype, f'dec_{self.img_resolution}x'
                            f'{self.img_resolution}_aux_norm')(x))
    x = _conv(out_channels, 3, self.dtype,
              f'dec_{self.img_resolution}x{self.img_resolution}_aux_conv', INIT_ZERO)(x)
    return x.astype(jnp.float32)
