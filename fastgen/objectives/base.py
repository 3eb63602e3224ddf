"""The contract every distillation or training rule implements, and what they share.

An objective is one file in this package plus one line in ``OBJECTIVES``. It declares its
trainable network groups, initialises them (often from the teacher), gives a pure loss per group,
and samples with its student in k steps. The trainer (``fastgen.train``) is the same for all: for
each group in order it differentiates that group's loss w.r.t. that group's parameters only,
applies the group's optax optimizer, and updates the EMA. The teacher's parameters are an argument
of every call, never captured.
"""

from typing import Any, Protocol

import jax

Params = Any
Batch = dict  # {'x': [B, ...] float32, 'label': [B] int32}


class Objective(Protocol):
  """Static (hashable) description of a rule; arrays live only in the arguments."""
  groups: tuple[str, ...]

  def init(self, rng: jax.Array, batch: Batch, teacher_params: Params) -> dict[str, Params]:
    """Initial parameters of every group, for a batch shaped like ``batch``. Entries that are not
    in ``groups`` are kept frozen in the state (no gradient, optimizer or EMA)."""

  def loss(self, group: str, params: dict[str, Params], ema_params: dict[str, Params],
           teacher_params: Params, batch: Batch, rng: jax.Array, step: jax.Array
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Scalar loss of ``group`` (differentiated w.r.t. ``params[group]``) and scalar metrics."""

  # Optional: ``refresh(params, ema_params, step) -> params``, called at the start of every step
  # (jit-compatible), for schedule-driven changes such as starting a new distillation round.
  # Optional: ``updates(group, step) -> bool`` (jit-compatible): whether ``group`` trains at this
  # step; where not, its params, optimizer state and EMA stay exactly as they were (two
  # time-scale updates, e.g. DMD2).

  def sample(self, params: dict[str, Params], teacher_params: Params, rng: jax.Array,
             labels: jax.Array | None, shape: tuple[int, ...], num_steps: int) -> jax.Array:
    """``shape`` samples from the trained model in ``num_steps`` steps (params: EMA weights)."""


def drop_labels(rng, labels, num_classes: int, drop_prob: float):
  """Replace each label by the null label ``num_classes`` with probability ``drop_prob``
  (classifier-free guidance training, Ho & Salimans 2022)."""
  if labels is None or not num_classes:
    return None
  if drop_prob <= 0:
    return labels
  return jax.numpy.where(jax.random.bernoulli(rng, drop_prob, labels.shape), num_classes, labels)
