"""Shared check of the image configs: they build, and their students fit their teacher."""

import jax
import jax.numpy as jnp

from fastgen import denoiser as denoiser_lib
from fastgen import objectives


def abstract_init(config):
  """``(objective, teacher_params, params)`` of ``config``'s rule, shapes only, with a network of
  the config's own architecture standing in for the checkpoint teacher."""
  teacher = denoiser_lib.from_config(config.network)
  objective = objectives.make_objective(config, teacher)
  size = config.network.img_resolution
  batch = {'x': jnp.zeros((1, size, size, config.network.in_channels)),
           'label': jnp.zeros((1,), jnp.int32)}
  teacher_params = jax.eval_shape(teacher.init, jax.random.key(0), batch['x'], batch['label'])
  params = jax.eval_shape(objective.init, jax.random.key(1), batch, teacher_params)
  return objective, teacher_params, params
