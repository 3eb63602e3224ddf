"""Raw denoiser networks F(x, noise_cond, labels, train) and the registry that builds them.

Every network is a Flax Linen module called as ``net.apply({'params': p}, x, noise_cond, labels,
train=..., rngs={'dropout': key})`` and returns float32 of x's shape; ``fastgen.denoiser.Denoiser``
adds the preconditioning. Labels are int32 in [0, num_classes]; ``num_classes`` is the null label
and embeds as exactly zero.
"""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from fastgen.networks import adm
from fastgen.networks import mlp
from fastgen.networks import unet

NETWORKS = {'mlp': mlp.MLP, 'unet': unet.SongUNet, 'adm': adm.DhariwalUNet}


def build_network(network_config) -> nn.Module:
  """The network named by ``network_config['name']``, built from the other keys as constructor
  arguments (a ConfigDict or dict; lists become tuples, a ``dtype`` string becomes a dtype)."""
  kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in network_config.items()}
  name = kwargs.pop('name', None)
  if name not in NETWORKS:
    raise ValueError(f'unknown network {name!r}; known: {", ".join(NETWORKS)}')
  cls = NETWORKS[name]
  fields = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in ('parent', 'name')]
  unknown = sorted(set(kwargs) - set(fields))
  if unknown:
    raise ValueError(f'network {name!r} has no field(s) {", ".join(unknown)}; '
                     f'accepted: {", ".join(fields)}')
  if isinstance(kwargs.get('dtype'), str):
    kwargs['dtype'] = jnp.dtype(kwargs['dtype'])
  return cls(**kwargs)


def count_params(params) -> int:
  """Number of scalars in a parameter pytree (arrays or ``jax.ShapeDtypeStruct`` leaves)."""
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))
