"""docs/adding_an_objective.md: the rule and config it writes, executed as printed, train through
the real trainer and reach their teacher (exact Fréchet distance to the closed-form 2-D mixture)."""

import json
import os
import re
import sys
import types

import pytest

from fastgen import objectives, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUIDE = os.path.join(REPO, 'docs', 'adding_an_objective.md')


def files_in_guide(text: str) -> dict[str, str]:
  """``{path: source}`` of the guide's Python blocks whose first line is ``# <path>.py``; blocks
  starting ``# <path>.py, continued`` are appended to that file."""
  files = {}
  for block in re.findall(r'```python\n(.*?)```', text, re.S):
    match = re.fullmatch(r'# ([\w/]+\.py)(, continued)?', block.split('\n', 1)[0])
    if match:
      path, continued = match.groups()
      assert (path in files) == bool(continued), f'{path}: first block or continuation misplaced'
      files[path] = files.get(path, '') + block
  return files


def _module(name, source, monkeypatch):
  module = types.ModuleType(name)
  monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up
  exec(compile(source, f'{GUIDE}:{name}', 'exec'), module.__dict__)  # pylint: disable=exec-used
  return module


@pytest.mark.usefixtures('one_device')
def test_guide_rule_distils_the_mixture_teacher(tmp_path, monkeypatch):
  with open(GUIDE) as f:
    guide = f.read()
  files = files_in_guide(guide)
  assert sorted(files) == ['fastgen/configs/kd.py', 'fastgen/objectives/kd.py'], sorted(files)
  assert "'kd': kd.KnowledgeDistillation," in guide  # the registry line the guide tells to add
  kd = _module('fastgen.objectives.kd', files['fastgen/objectives/kd.py'], monkeypatch)
  monkeypatch.setitem(objectives.OBJECTIVES, 'kd', kd.KnowledgeDistillation)
  config = _module('fastgen.configs.kd', files['fastgen/configs/kd.py'], monkeypatch).get_config()

  # The guide's config, shortened: a smaller batch, 250 steps with a shorter EMA, an 8-step
  # Heun teacher (the target and the reference alike), one evaluation with 4096 samples.
  config.data.batch_size = 256
  config.objective.teacher_steps = 8
  config.train.update(num_steps=250, log_every=250, checkpoint_every=250, sample_every=0,
                      ema_decay=0.95)
  config.eval.update(every=250, num_samples=4096, batch_size=4096, teacher_steps=8)
  train.train_and_evaluate(config, str(tmp_path))
  with open(tmp_path / 'metrics.jsonl') as f:
    final = [json.loads(line) for line in f][-1]
  print({k: v for k, v in final.items() if k.startswith('eval/')})
  # The student reproduces the teacher's 15-NFE sampler in one step, up to sampling noise.
  assert final['eval/fd_1step'] < final['eval/fd_teacher'] + 2 * final['eval/fd_floor'], final
