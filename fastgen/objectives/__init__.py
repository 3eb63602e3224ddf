"""Registry of rules. Adding a rule = one module here + one line in ``OBJECTIVES``."""

import dataclasses

from fastgen import denoiser as denoiser_lib
from fastgen.objectives import (consistency, dmd, edm, flow_matching, instaflow, meanflow,
                                progressive, reflow, scm, sid, slimflow)

OBJECTIVES = {
    'cd': consistency.ConsistencyDistillation,
    'ct': consistency.ConsistencyTraining,
    'dmd': dmd.DMD,
    'edm': edm.EDM,
    'flow_matching': flow_matching.FlowMatching,
    'instaflow': instaflow.InstaFlow,
    'meanflow': meanflow.MeanFlow,
    'pd': progressive.ProgressiveDistillation,
    'reflow': reflow.Reflow,
    'scd': scm.SCD,
    'sct': scm.SCT,
    'sid': sid.SiD,
    'slimflow': slimflow.SlimFlow,
}


def make_objective(config, teacher=None):
  """Build ``OBJECTIVES[config.objective.name]`` from the config.

  Keys of ``config.objective`` other than ``name`` become constructor arguments; a ``denoiser``
  field is filled from ``config.network`` and a ``teacher`` field with the loaded teacher model.
  """
  name = config.objective.name
  if name not in OBJECTIVES:
    raise ValueError(f'unknown objective {name!r}; known: {", ".join(sorted(OBJECTIVES))}')
  cls = OBJECTIVES[name]
  fields = {f.name for f in dataclasses.fields(cls)}
  kwargs = {k: tuple(v) if isinstance(v, list) else v
            for k, v in config.objective.items() if k != 'name'}
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
