"""Registry of rules. Adding a rule = one module here + one line in ``OBJECTIVES``; each is a frozen
dataclass subclassing :class:`fastgen.objectives.base.Objective` (the contract)."""

import dataclasses

from fastgen import denoiser as denoiser_lib
from fastgen.objectives import (base, consistency, dmd, ect, edm, flow_matching, guided,
                                instaflow, ladd, meanflow, progressive, reflow, scm, sid, sim,
                                slimflow, tcm, uni_instruct)

OBJECTIVES = {
    'cd': consistency.ConsistencyDistillation,
    'ct': consistency.ConsistencyTraining,
    'dmd': dmd.DMD,
    'ect': ect.ECT,
    'edm': edm.EDM,
    'flow_matching': flow_matching.FlowMatching,
    'guided': guided.GuidedDistillation,
    'instaflow': instaflow.InstaFlow,
    'ladd': ladd.LADD,
    'meanflow': meanflow.MeanFlow,
    'pd': progressive.ProgressiveDistillation,
    'reflow': reflow.Reflow,
    'scd': scm.SCD,
    'sct': scm.SCT,
    'sid': sid.SiD,
    'sim': sim.SIM,
    'slimflow': slimflow.SlimFlow,
    'tcm': tcm.TCM,
    'uni_instruct': uni_instruct.UniInstruct,
}


# Options renamed so that one idea has one name across rules: old key -> (new key, conversion).
RENAMED_OPTIONS = {
    'sigma_gen': ('sigma_init', ''),  # DMD: the generator's input noise level, as SiD's
    'tmax': ('u_max', 'use objective.u_max = tmax / 1000'),  # SiD: u ~ U[u_min, u_max], as DMD
    'premetric': ('metric', ''),  # reflow, InstaFlow, SlimFlow: as CD and CT
}


def check_renamed_options(options):
  """Refuse an option that was renamed, with a message naming its new name."""
  for old in sorted(set(options) & set(RENAMED_OPTIONS)):
    new, conversion = RENAMED_OPTIONS[old]
    raise ValueError(f'objective.{old} was renamed to objective.{new}' +
                     (f': {conversion}' if conversion else ''))


def objective_class(name: str) -> type[base.Objective]:
  """``OBJECTIVES[name]``, or an error listing the known names."""
  if name not in OBJECTIVES:
    raise ValueError(f'unknown objective {name!r}; known: {", ".join(sorted(OBJECTIVES))}')
  return OBJECTIVES[name]


def make_objective(config, teacher=None) -> base.Objective:
  """Build ``OBJECTIVES[config.objective.name]`` from the config.

  Keys of ``config.objective`` other than ``name`` become constructor arguments; a ``denoiser``
  field is filled from ``config.network`` and a ``teacher`` field with the loaded teacher model.
  The class must be a frozen dataclass subclassing :class:`base.Objective` (whose own checks ran
  when it was defined).
  """
  name = config.objective.name
  cls = objective_class(name)
  if not (issubclass(cls, base.Objective) and dataclasses.is_dataclass(cls) and
          cls.__dataclass_params__.frozen):
    raise TypeError(f'objective {name!r} ({cls.__name__}) must be a frozen dataclass '
                    f'subclassing fastgen.objectives.base.Objective')
  fields = {f.name for f in dataclasses.fields(cls)}
  kwargs = {k: tuple(v) if isinstance(v, list) else v
            for k, v in config.objective.items() if k != 'name'}
  check_renamed_options(kwargs)
  unknown = sorted(set(kwargs) - fields)
  if unknown:
    raise ValueError(f'objective {name!r} has no option(s) {", ".join(unknown)}; '
                     f'it accepts: {", ".join(sorted(fields - {"denoiser", "teacher"}))}')
  if 'denoiser' in fields:
    kwargs['denoiser'] = denoiser_lib.from_config(config.network)
  if 'teacher' in fields:
    if teacher is None:
      raise ValueError(f'objective {name!r} distils a teacher: set config.teacher.kind to '
                       f'"analytic" or "checkpoint"')
    kwargs['teacher'] = teacher
  return cls(**kwargs)
