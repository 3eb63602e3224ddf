"""The run-wide settings of a config checked before any work: step counts and intervals, batch
sizes, the optimizer, the sampler and the evaluator. Every bad value is named in one
``ValueError``; nothing has been written when it is raised. (A rule's own options are checked by
its objective, the network's by the network.)"""

import math

# (section, key, lower bound, whether the bound itself is allowed, what the bound means)
_BOUNDS = (
    ('data', 'batch_size', 1, True, ''),
    ('train', 'num_steps', 1, True, ''),
    ('train', 'log_every', 1, True, ''),
    ('train', 'checkpoint_every', 1, True, ''),
    ('train', 'keep_checkpoints', 1, True, 'a run keeps at least its newest checkpoint'),
    ('train', 'sample_every', 0, True, '0: no pictures'),
    ('train', 'max_consecutive_skips', 1, True, ''),
    ('optim', 'lr', 0, False, ''),
    ('optim', 'warmup_steps', 0, True, ''),
    ('optim', 'eps', 0, False, ''),
    ('optim', 'weight_decay', 0, True, ''),
    ('optim', 'grad_clip', 0, True, '0: no clipping'),
    ('sample', 'num_steps', 0, True, "0: the rule's own count, progressive distillation's"),
    ('sample', 'num_samples', 1, True, ''),
    ('sample', 'batch_size', 1, True, ''),
    ('sample', 'grid_size', 1, True, ''),
    ('eval', 'every', 0, True, '0: only --mode=eval'),
    ('eval', 'num_samples', 2, True, 'a covariance needs two samples'),
    ('eval', 'batch_size', 1, True, ''),
    ('eval', 'teacher_steps', 0, True, '0: skip the teacher'),
    ('eval', 'guidance_scale', 0, True, '1: unguided'),
    ('eval', 'num_projections', 1, True, ''),
    ('eval', 'reference_num_samples', 0, True, '0: the whole split'),
    ('mesh', 'model', 1, True, ''),
)
# (section, key): values in [0, 1) or [0, 1]
_FRACTIONS = {('train', 'ema_decay'): True, ('optim', 'b1'): False, ('optim', 'b2'): False}


def _value(config, section: str, key: str):
  part = config.get(section)
  return None if part is None else part.get(key)


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def problems(config) -> list[str]:
  """One line per bad run-wide setting of ``config`` (empty when all are valid); settings a
  config does not have are not checked."""
  found = []
  for section, key, bound, inclusive, meaning in _BOUNDS:
    value = _value(config, section, key)
    if value is None:
      continue
    name = f'{section}.{key}={value!r}'
    if not _is_number(value) or not math.isfinite(value):
      found.append(f'{name} must be a finite number')
    elif value < bound or (value == bound and not inclusive):
      found.append(f'{name} must be {">=" if inclusive else ">"} {bound}'
                   + (f' ({meaning})' if meaning else ''))
  for (section, key), closed in _FRACTIONS.items():
    value = _value(config, section, key)
    if value is None:
      continue
    if not _is_number(value) or not (0 <= value <= 1 if closed else 0 <= value < 1):
      found.append(f'{section}.{key}={value!r} must be in [0, 1{"]" if closed else ")"}')
  steps = _value(config, 'eval', 'steps')
  if steps is not None and (not steps or any(not isinstance(k, int) or k < 1 for k in steps)):
    found.append(f'eval.steps={tuple(steps)!r} must be one or more step counts >= 1')
  return found


def check(config) -> None:
  """Raise ``ValueError`` naming every bad run-wide setting of ``config``."""
  found = problems(config)
  if found:
    raise ValueError('invalid settings: ' + '; '.join(found))
