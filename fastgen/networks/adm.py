"""DhariwalUNet: the ADM U-Net of Dhariwal & Nichol 2021 as re-implemented in EDM (Karras et al.
2022, ``training/networks.py``), the network of EDM's ImageNet-64 model (EDM Table 7, "ADM").
Images are NHWC.

Parameter names follow EDM's module names as in :mod:`fastgen.networks.unet` (``enc.64x64_conv``
<-> ``enc_64x64_conv``; ``out_norm`` and ``out_conv`` at the top). Differences from EDM: no
``map_augment`` (EDM's samplers pass no augmentation labels, where it contributes zero), and
biases start at zero instead of EDM's U(+-1/sqrt(fan_in)) (only training from scratch sees it).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from fastgen.networks import unet

# EDM DhariwalUNet ``init``: kaiming_uniform * sqrt(1/3) = U(+-1/sqrt(fan_in)); ``init_zero``: 0.
INIT = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')
INIT_ZERO = nn.initializers.zeros
CHANNELS_PER_HEAD = 64
NORM_EPS = 1e-5


class DhariwalUNet(nn.Module):
  """ADM U-Net F(x, noise_cond, labels) (Dhariwal & Nichol 2021; EDM ``DhariwalUNet``).

  Mapping: emb = silu(map_layer1(silu(map_layer0(e(noise_cond)))) + map_label(one_hot(labels)))
  with e the positional embedding [cos, sin] of ``model_channels`` channels (the null label K
  embeds as zero). Encoder per level: a 3x3 conv (first level) or a down-sampling block, then
  ``num_blocks`` blocks; decoder per level: ``in0`` (attention) and ``in1``, or an up-sampling
  block, then ``num_blocks + 1`` blocks fed [x, skip]; then out_norm -> silu -> out_conv. Blocks
  use adaptive scale (scale, shift), skip_scale 1, GroupNorm eps 1e-5, attention with
  ``out_channels // 64`` heads at ``attn_resolutions`` (none below 64 channels). Returns float32.
  """
  img_resolution: int
  in_channels: int
  out_channels: int | None = None
  model_channels: int = 192
  channel_mult: tuple = (1, 2, 3, 4)
  channel_mult_emb: int = 4
  num_blocks: int = 3
  attn_resolutions: tuple = (32, 16, 8)
  dropout: float = 0.10
  num_classes: int = 0
  dtype: Any = jnp.float32
  remat: bool = False  # recompute each block's activations in the backward pass (less memory)

  @nn.compact
  def __call__(self, x, noise_cond, labels=None, train: bool = False):
    expected = (self.img_resolution, self.img_resolution, self.in_channels)
    if x.shape[1:] != expected:
      raise ValueError(f'DhariwalUNet expects NHWC images of shape '
                       f'[B, {", ".join(map(str, expected))}], got {x.shape}')
    emb_channels = self.model_channels * self.channel_mult_emb
    dense = lambda features, name, init=INIT, **kw: nn.Dense(
        features, kernel_init=init, dtype=self.dtype, param_dtype=jnp.float32, name=name, **kw)
    block_cls = nn.remat(unet.UNetBlock, static_argnums=(3,)) if self.remat else unet.UNetBlock
    block = lambda out_channels, name, attention=False, **kw: block_cls(
        out_channels, num_heads=out_channels // CHANNELS_PER_HEAD if attention else 0,
        dropout=self.dropout, dtype=self.dtype, adaptive_scale=True, resample_proj=False,
        skip_scale=1.0, eps=NORM_EPS, kernel_init=INIT, zero_init=INIT_ZERO, attn_init=INIT,
        name=name, **kw)

    emb = unet.positional_embedding(noise_cond, self.model_channels)
    emb = nn.silu(dense(emb_channels, 'map_layer0')(emb))
    emb = dense(emb_channels, 'map_layer1')(emb)
    if self.num_classes:
      if labels is None:
        labels = jnp.full(x.shape[:1], self.num_classes, jnp.int32)
      emb = emb + dense(emb_channels, 'map_label', nn.initializers.normal(1.0), use_bias=False)(
                            jax.nn.one_hot(labels, self.num_classes))
    emb = nn.silu(emb)

    skips = []
    for level, mult in enumerate(self.channel_mult):
      res = self.img_resolution >> level
      if level == 0:
        x = unet.conv(self.model_channels * mult, 3, self.dtype, f'enc_{res}x{res}_conv', INIT)(x)
      else:
        x = block(x.shape[-1], f'enc_{res}x{res}_down', down=True)(x, emb, train)
      skips.append(x)
      for idx in range(self.num_blocks):
        x = block(self.model_channels * mult, f'enc_{res}x{res}_block{idx}',
                  attention=res in self.attn_resolutions)(x, emb, train)
        skips.append(x)
      self.sow('intermediates', 'level_features', x)  # each resolution, for per-level heads
    self.sow('intermediates', 'features', x)  # the bottleneck, for discriminators on this network

    # Decoder: attention in every block of a level at ``attn_resolutions``.
    x = unet.decoder(block, x, skips, emb, train, img_resolution=self.img_resolution,
                     model_channels=self.model_channels, channel_mult=self.channel_mult,
                     num_blocks=self.num_blocks,
                     attention=lambda res, idx: res in self.attn_resolutions)
    x = nn.silu(unet.group_norm(x.shape[-1], self.dtype, 'out_norm', NORM_EPS)(x))
    x = unet.conv(self.out_channels or self.in_channels, 3, self.dtype, 'out_conv', INIT_ZERO)(x)
    return x.astype(jnp.float32)
