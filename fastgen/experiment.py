"""A run's set-up, built from its config: mesh, teacher, data, objective, state and shardings.

Everything that runs a config (the trainer :mod:`fastgen.train`, ``--mode=sample|eval``
:mod:`fastgen.inference`, the EDM import, experiments/) builds it here, so all of them place the
teacher, the state and the batch on the same shardings: the batch split over the mesh's 'data'
axis, params, EMA, optimizer state and the teacher split over its 'model' axis by the FSDP rule
of :func:`fastgen.sharding.param_shardings` (replicated when ``mesh.model=1``). Shardings are
passed to every ``jax.jit`` explicitly; no mesh is set globally.
"""

import functools
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from fastgen import checkpoint, couplings, data, objectives, sharding, step, teachers


class Experiment:
  """Everything a run needs, built from the config: mesh, data, teacher, objective, state.

  ``teacher`` (a ``(model, params)`` pair) and ``dataset`` (an iterator with ``shape``,
  ``num_classes``, ``get_state``, ``set_state``) replace those the config names, for
  measurements on synthetic inputs (experiments/throughput.py).
  """

  def __init__(self, config: ml_collections.ConfigDict, workdir: str = '', *, teacher=None,
               dataset=None):
    self.config = config
    self.mesh = sharding.make_mesh(config.mesh.model)
    sharding.check_batch_size(config.data.batch_size, self.mesh)
    self.teacher, teacher_params = teacher or teachers.load_teacher(config.teacher)
    self.teacher_shardings = sharding.param_shardings(teacher_params, self.mesh)
    self.teacher_params = jax.device_put(teacher_params, self.teacher_shardings)
    self.data = dataset or self._make_dataset(workdir)
    if teacher is None and config.teacher.kind == 'checkpoint':
      teachers.check_network_teacher(self.teacher, teacher_params, self.data.shape,
                                     config.teacher.workdir)
    self.objective = objectives.make_objective(config, self.teacher)
    if getattr(self.objective, 'data_labels', False) and not self.data.num_classes:
      raise ValueError(f'objective.data_labels=True trains on the data set\'s labels, but data '
                       f'{config.data.name!r} has none: make it conditional (gmm2d: '
                       f'data.conditional=True) or set objective.data_labels=False')
    self.optimizer = step.make_optimizer(config.optim, self.objective.round_ends)
    self.init_rng, self.train_rng, self.sample_rng = jax.random.split(
        jax.random.key(config.seed), 3)
    example = {'x': np.zeros((1,) + tuple(self.data.shape), np.float32),
               'label': np.zeros((1,), np.int32)}
    init = lambda rng, teacher_params: step.init_state(self.objective, self.optimizer, rng,
                                                       example, teacher_params)
    self.state_shardings = sharding.param_shardings(
        jax.eval_shape(init, self.init_rng, self.teacher_params), self.mesh)
    self._init = jax.jit(init, out_shardings=self.state_shardings)

  def _make_dataset(self, workdir: str):
    data_config = self.config.data
    if data_config.name == 'couplings':  # the teacher's ODE pairs, written to disk on first use
      data_config = ensure_couplings(data_config, workdir, self.teacher, self.teacher_params,
                                     self.mesh)
    return data.make_dataset(data_config, seed=self.config.seed,
                             process_index=jax.process_index(),
                             process_count=jax.process_count())

  def abstract_state(self):
    return jax.eval_shape(self._init, self.init_rng, self.teacher_params)

  def initial_state(self):
    return self._init(self.init_rng, self.teacher_params)

  @functools.cached_property
  def train_step(self):
    """The jitted :func:`fastgen.step.make_train_step` of the config: ``(state, teacher_params,
    global batch, rng[, trains]) -> (state, metrics)``, the state donated and kept on its
    shardings; ``trains`` (static, positional: ``jit`` with shardings takes no keywords) as
    :meth:`trains_at` gives it. On the CPU a traced schedule computes a skipped update and
    discards it rather than skipping it in a conditional (:func:`fastgen.step.scheduled_update`).
    """
    replicated = sharding.replicated(self.mesh)
    train = self.config.train
    return jax.jit(
        step.make_train_step(self.objective, self.optimizer, train.ema_decay,
                             train.skip_nonfinite, conditional_updates=not self._on_cpu),
        in_shardings=(self.state_shardings, self.teacher_shardings,
                      sharding.batch_sharded(self.mesh), replicated),
        out_shardings=(self.state_shardings, replicated), donate_argnums=0, static_argnums=4)

  @property
  def _on_cpu(self) -> bool:
    return self.mesh.devices.flat[0].platform == 'cpu'

  def trains_at(self, step_index: int) -> tuple[bool, ...] | None:
    """The ``trains`` argument of :attr:`train_step` at training step ``step_index``: on the CPU,
    for a rule with an update schedule, which groups train (the schedule evaluated here, so a
    skipped group is left out of the program: one compiled program per pattern, e.g. DMD2's
    fake-score-only and full steps); else ``None`` (the schedule, if any, in the program)."""
    if not (self._on_cpu and self.objective.has_update_schedule):
      return None
    return tuple(bool(self.objective.trains(group, step_index))
                 for group in self.objective.groups)

  def sample_labels(self, num: int):
    num_classes = self.data.num_classes
    return jnp.arange(num, dtype=jnp.int32) % num_classes if num_classes else None

  @functools.cached_property
  def _samplers(self):
    """Jitted ``objective.sample``: output split over the 'data' axis, or replicated when the
    sample count does not divide over the devices."""
    return {split: jax.jit(self.objective.sample, static_argnames=('shape', 'num_steps'),
                           out_shardings=(sharding.batch_sharded(self.mesh) if split
                                          else sharding.replicated(self.mesh)))
            for split in (True, False)}

  def sample(self, params, rng, num: int, num_steps: int):
    """``num`` samples of the model in ``params`` (EMA weights) with ``num_steps`` steps."""
    sample = self._samplers[num % sharding.data_size(self.mesh) == 0]
    return sample(params, self.teacher_params, rng, self.sample_labels(num),
                  shape=(num,) + tuple(self.data.shape), num_steps=num_steps)


def ensure_couplings(data_config, workdir: str, teacher, teacher_params, mesh):
  """The ``couplings`` data section with ``directory`` resolved, after writing any missing
  shards (:func:`fastgen.couplings.write_couplings`).

  Shape and number of classes come from ``data.source``, the data set the teacher models.
  """
  if teacher is None:
    raise ValueError('data.name="couplings" solves a teacher ODE: set config.teacher.kind')
  source = data.make_dataset(data_config.source, seed=0)
  directory = couplings.coupling_directory(data_config, workdir)
  couplings.write_couplings(directory, teacher, teacher_params, shape=source.shape,
                            num_classes=source.num_classes, num_pairs=data_config.num_pairs,
                            shard_size=data_config.shard_size, ode_steps=data_config.ode_steps,
                            ode_method=data_config.get('ode_method', 'heun'),
                            ode_t_max=data_config.get('ode_t_max', couplings.FLOW_T_MAX),
                            seed=data_config.get('coupling_seed', 0), mesh=mesh)
  resolved = data_config.copy_and_resolve_references()
  with resolved.unlocked():
    resolved.directory = directory
  return resolved


def save_config(config, workdir: str) -> None:
  """``<workdir>/config.json`` (process 0), which later runs read (teacher.kind='checkpoint')."""
  if jax.process_index() == 0:
    tmp = os.path.join(workdir, 'config.json.tmp')
    with open(tmp, 'w') as f:
      f.write(config.to_json_best_effort(indent=2))
    os.replace(tmp, os.path.join(workdir, 'config.json'))


def restore_or_init(experiment: Experiment, checkpointer: checkpoint.Checkpointer):
  """``(step, state)``: the newest readable checkpoint (data iterator restored too), else fresh."""
  restored = checkpointer.restore_latest(experiment.abstract_state())
  if restored is None:
    return 0, experiment.initial_state()
  restored_step, state, data_state = restored
  experiment.data.set_state(data_state)
  logging.info('resumed from %s/%d', checkpointer.directory, restored_step)
  return restored_step, state


def restore_latest(experiment: Experiment, workdir: str):
  """``(step, state)`` of the newest checkpoint in ``workdir``; an error if there is none."""
  checkpointer = checkpoint.Checkpointer(workdir, keep=experiment.config.train.keep_checkpoints)
  restored = checkpointer.restore_latest(experiment.abstract_state())
  checkpointer.close()
  if restored is None:
    raise checkpoint.CheckpointError(f'no checkpoint in {workdir}: train first (--mode=train)')
  restored_step, state, _ = restored
  return restored_step, state
