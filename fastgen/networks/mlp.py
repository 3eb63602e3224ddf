"""A residual MLP denoiser network for low-dimensional data (2-D toy distributions).

The noise conditioning and class embedding follow EDM's SongUNet mapping network (Karras et al.
2022): a positional embedding of ``noise_cond`` plus ``map_label`` of the scaled one-hot label,
then two SiLU dense layers. The trunk is a stack of pre-norm residual blocks (He et al. 2016) with
the embedding added after the first dense layer, the DDPM++ block with dense layers in place of
convolutions (Song et al. 2021).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fastgen.networks import unet


class ResidualBlock(nn.Module):
  """h <- h + dense1(dropout(silu(norm1(dense0(silu(norm0(h))) + affine(emb)))))."""
  features: int
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, h, emb, train: bool):
    dense = lambda name, init=unet.INIT: nn.Dense(
        self.features, kernel_init=init, dtype=self.dtype, param_dtype=jnp.float32, name=name)
    norm = lambda name: nn.LayerNorm(dtype=self.dtype, param_dtype=jnp.float32, name=name)
    y = dense('dense0')(nn.silu(norm('norm0')(h)))
    y = nn.silu(norm('norm1')(y + dense('affine')(emb)))
    y = nn.Dropout(self.dropout, deterministic=not train)(y)
    return h + dense('dense1', unet.INIT_ZERO)(y)


class MLP(nn.Module):
  """Denoiser network F(x, noise_cond, labels) for x of shape [B, D]; returns float32 [B, D].
  ``noise_cond`` is [B], or [B, k] for k time inputs (:func:`fastgen.networks.unet.embed_times`)."""
  hidden: int = 256
  depth: int = 4
  emb_dim: int = 128
  dropout: float = 0.0
  num_classes: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, noise_cond, labels=None, train: bool = False):
    if x.ndim != 2:
      raise ValueError(f'MLP expects inputs of shape [B, D], got {x.shape}')
    dense = lambda features, name, init=unet.INIT: nn.Dense(
        features, kernel_init=init, dtype=self.dtype, param_dtype=jnp.float32, name=name)

    emb = unet.embed_times(noise_cond,
                           lambda c: unet.positional_embedding(c, self.emb_dim, endpoint=True))
    if self.num_classes:
      if labels is None:
        labels = jnp.full(x.shape[:1], self.num_classes, jnp.int32)
      onehot = jax.nn.one_hot(labels, self.num_classes) * np.sqrt(self.num_classes)
      emb = emb + nn.Dense(emb.shape[-1], use_bias=False, kernel_init=unet.INIT, dtype=self.dtype,
                           param_dtype=jnp.float32, name='map_label')(onehot)
    emb = nn.silu(dense(self.emb_dim, 'map_layer0')(emb))
    emb = nn.silu(dense(self.emb_dim, 'map_layer1')(emb))

    h = dense(self.hidden, 'input')(x)
    for idx in range(self.depth):
      h = ResidualBlock(self.hidden, self.dropout, self.dtype, name=f'block{idx}')(h, emb, train)
      self.sow('intermediates', 'level_features', h)  # each block, for per-level heads
    self.sow('intermediates', 'features', h)  # the trunk, for discriminators on this network
    h = nn.silu(nn.LayerNorm(dtype=self.dtype, param_dtype=jnp.float32, name='out_norm')(h))
    return dense(x.shape[-1], 'output', unet.INIT_ZERO)(h).astype(jnp.float32)
