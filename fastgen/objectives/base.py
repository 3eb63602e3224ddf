"""The contract every distillation or training rule implements, and what they share.

An objective is one file in this package plus one line in ``OBJECTIVES``: a frozen dataclass that
subclasses :class:`Objective`. It declares its trainable network groups and which of them is the
run's network, initialises them (often from the teacher), gives a pure loss per group, and
samples with its student in k steps. The trainer (:mod:`fastgen.step`) is the same for all: for
each group in order it differentiates that group's loss w.r.t. that group's parameters only,
applies the group's optax optimizer, and updates the EMA. The teacher's parameters are an argument
of every call, never captured.

Optional behaviour is a hook declared here with its default, so the trainer and the evaluator
call it on every objective and never probe for it:

* ``set_frozen(params, ema_params, step) -> params``: the frozen entries for this step, before any
  group trains (default: unchanged). A new progressive-distillation round, an EMA target network.
* ``trains(group, step) -> bool``: whether ``group`` trains at this step (default: always).
  Overriding it makes the trainer skip a group's update exactly (two time-scale rules, DMD2).
* ``velocity(params, x_t, t, labels) -> v``: the student's velocity, for rules whose student is a
  flow (straightness evaluation). ``has_velocity`` says whether a rule overrides it.
* ``learning_rate_multiplier(group) -> float``: the group's learning rate relative to the
  optimizer's (default 1): the trainer scales that group's optimizer updates by it.

The contract is checked when a subclass is defined: a public method that is none of the above (a
misspelt hook) is an error naming it, and a concrete rule must have non-empty ``groups`` that
contain its ``network_group``.
"""

import abc
import difflib
import inspect
from typing import Any, ClassVar

import jax

Params = Any
Batch = dict  # {'x': [B, ...] float32, 'label': [B] int32}

REQUIRED_METHODS = ('init', 'loss', 'sample')
HOOKS = ('set_frozen', 'trains', 'velocity', 'learning_rate_multiplier')


def generator_trains_every(group: str, step: int | jax.Array, every: int) -> bool | jax.Array:
  """Two time-scale updates (DMD2): group 'generator' trains after every ``every`` updates of the
  other groups, which train at every step (an :meth:`Objective.trains`). Host arithmetic for a
  Python ``step`` (the CPU trainer asks at every step: a device array here would wait for the
  step in flight), traced for a traced one."""
  if group == 'generator':
    return (step + 1) % every == 0
  return True


class Objective(abc.ABC):
  """Static (hashable) description of a rule; arrays live only in the arguments."""

  groups: ClassVar[tuple[str, ...]] = ()
  """The trainable networks, in update order; each has its own optimizer state and EMA."""
  network_group: ClassVar[str] = ''
  """The group that is the run's network: what it samples with, what a later run loads as its
  teacher (``teacher.kind='checkpoint'``) and what ``edm_export`` writes by default."""
  has_velocity: ClassVar[bool] = False
  """Whether the rule overrides :meth:`velocity` (set when the subclass is defined)."""
  has_update_schedule: ClassVar[bool] = False
  """Whether the rule overrides :meth:`trains` (set when the subclass is defined); if not, the
  trainer's step has no conditional at all."""

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    for derived in ('has_velocity', 'has_update_schedule'):
      if derived in vars(cls):
        raise TypeError(f'{cls.__name__}.{derived} is derived from the hooks it overrides; '
                        f'do not set it')
    cls.has_velocity = cls.velocity is not Objective.velocity
    cls.has_update_schedule = cls.trains is not Objective.trains
    _check_public_methods(cls)
    abstract = (cls.init is Objective.init or cls.loss is Objective.loss or
                cls.sample is Objective.sample)  # a shared base of several rules
    if not abstract:
      _check_groups(cls)

  @abc.abstractmethod
  def init(self, rng: jax.Array, batch: Batch, teacher_params: Params) -> dict[str, Params]:
    """Initial parameters of every group, for a batch shaped like ``batch``. Entries that are not
    in ``groups`` are kept frozen in the state (no gradient, optimizer or EMA)."""

  @abc.abstractmethod
  def loss(self, group: str, params: dict[str, Params], ema_params: dict[str, Params],
           teacher_params: Params, batch: Batch, rng: jax.Array, step: jax.Array
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Scalar loss of ``group`` (differentiated w.r.t. ``params[group]``) and scalar metrics."""

  @abc.abstractmethod
  def sample(self, params: dict[str, Params], teacher_params: Params, rng: jax.Array,
             labels: jax.Array | None, shape: tuple[int, ...], num_steps: int) -> jax.Array:
    """``shape`` samples from the trained model in ``num_steps`` steps (params: EMA weights)."""

  def set_frozen(self, params: dict[str, Params], ema_params: dict[str, Params],
                 step: jax.Array) -> dict[str, Params]:
    """``params`` with the frozen entries this step uses, before any group trains (jit-able)."""
    del ema_params, step
    return params

  def trains(self, group: str, step: jax.Array) -> bool | jax.Array:
    """Whether ``group`` trains at ``step`` (jit-able); where not, its params, optimizer state
    and EMA stay exactly as they were."""
    del group, step
    return True

  def learning_rate_multiplier(self, group: str) -> float:
    """``group``'s learning rate relative to ``optim.lr`` and its schedule (a Python float): its
    optimizer updates are scaled by it."""
    del group
    return 1.0

  @property
  def round_ends(self) -> tuple[int, ...]:
    """The training steps at which the rule's rounds end (progressive distillation's halvings),
    for ``optim.decay_per_round``; () for a rule without rounds."""
    return ()

  def velocity(self, params: dict[str, Params], x_t: jax.Array, t: jax.Array,
               labels: jax.Array | None = None) -> jax.Array:
    """The student's flow velocity v(x_t, t) in rectified-flow time, x_t = (1 - t) x0 + t z."""
    raise NotImplementedError(f'{type(self).__name__} has no velocity (has_velocity is False)')


def _check_public_methods(cls) -> None:
  """A public method must be a required method or a hook: anything else is a misspelt hook."""
  known = REQUIRED_METHODS + HOOKS
  for name, value in vars(cls).items():
    if name.startswith('_') or name in known:
      continue
    if inspect.isfunction(value) or isinstance(value, (staticmethod, classmethod)):
      close = difflib.get_close_matches(name, known, n=1)
      hint = f'did you mean {close[0]!r}? ' if close else ''
      raise TypeError(f'{cls.__name__}.{name} is not a method of the objective contract '
                      f'({", ".join(known)}): {hint}A helper method must be private '
                      f'(_{name}).')


def _check_groups(cls) -> None:
  groups = cls.groups
  if not isinstance(groups, tuple) or not groups or not all(isinstance(g, str) for g in groups):
    raise TypeError(f'{cls.__name__}.groups must be a non-empty tuple of group names, '
                    f'not {groups!r}')
  if cls.network_group not in groups:
    raise TypeError(f'{cls.__name__}.network_group={cls.network_group!r} must be one of its '
                    f'groups {groups}')


def drop_labels(rng, labels, num_classes: int, drop_prob: float):
  """Replace each label by the null label ``num_classes`` with probability ``drop_prob``
  (classifier-free guidance training, Ho & Salimans 2022)."""
  if labels is None or not num_classes:
    return None
  if drop_prob <= 0:
    return labels
  return jax.numpy.where(jax.random.bernoulli(rng, drop_prob, labels.shape), num_classes, labels)
