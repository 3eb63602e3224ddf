"""The rules table: each distillation rule's k-step quality beside its teacher at 35 NFE.

  python experiments/rules_table.py --data=gmm2d                   # ~8 min on 2 CPU cores
  python experiments/rules_table.py --data=digits --num_steps=1500  # ~75 min; runs/edm_digits

For every rule it trains the config ``<rule>_<data>`` (optionally shortened) in
``runs/rules_table/<rule>_<data>`` (``--runs_dir``), then evaluates the EMA student at 1, 2 and 4
steps with the config's evaluator (gmm2d: exact Fréchet distance and sliced Wasserstein to the known mixture;
digits: FID in the shipped digits-classifier features) and the teacher's Heun sampler at 18 steps
(35 NFE). Teacher evaluations are counted by tracing each group's loss with a counting wrapper
around the teacher (network calls per sample, weighted by the share of steps that update the group,
times batch size and steps), plus the teacher-ODE solves of a coupling data set (DMD's regression
pairs). Prints a markdown table and writes it as JSON next to this script (``results/rules_<data>.json``), after each rule;
rows of rules not named by ``--rules`` are kept from an earlier run.

Rectified-flow rules train on the teacher's ODE couplings (``data.name='couplings'``), solved at
the start of the run (counted in its wall-clock and teacher evaluations); InstaFlow distils the
2-rectified flow of the 'reflow' run (its ``teacher.workdir``), so run 'reflow' first. Their rows
also hold ``eval/straightness`` of the student's ODE and ``eval/straightness_teacher``.

The continuous-time and easy consistency rules (sCD, sCT, ECT, TCM) sample in 1 and 2 steps only
(one re-noising level each), so their rows hold those two (``–`` at 4 steps); MeanFlow samples
at any k. TCM's stage 2 truncates the ECT run of the same data set (its stage 1, the
``teacher.workdir``), so run 'ect' first; its row sits beside the data's EDM teacher.

Progressive distillation's k-step figures come from the in-loop evaluation at the end of the
round whose student samples in k steps, as the paper reports them. A shortened run
(``--num_steps``) also shortens the EMA horizon to a tenth of the run and keeps PD's number of
rounds.
"""

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from fastgen import configs, evaluate, sharding, train  # pylint: disable=g-import-not-at-top,wrong-import-position
from fastgen import experiment as experiment_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from fastgen.step import sampling_params  # pylint: disable=g-import-not-at-top,wrong-import-position

RULES = ('sid', 'sida', 'sim', 'uni_instruct', 'dmd', 'dmd2', 'ladd', 'cd', 'ct', 'scd', 'sct',
         'meanflow', 'ect', 'tcm', 'pd', 'reflow', 'instaflow', 'slimflow')
# Rules whose teacher is another rule's run (a pipeline): InstaFlow distils the 2-RF of 'reflow',
# TCM's stage 2 truncates the ECT run (its stage 1).
TEACHER_RULE = {'instaflow': 'reflow', 'tcm': 'ect'}
# Rules whose student samples only at the steps its config evaluates (consistency models with one
# re-noising level: 1 and 2 steps).
EVAL_STEPS_FROM_CONFIG = ('scd', 'sct', 'ect', 'tcm')


@dataclasses.dataclass(frozen=True)
class _CountingTeacher:
  """The teacher, recording the batch size of each call while a step is traced (a guided call
  evaluates the conditional and unconditional batches as one call of twice the batch)."""
  teacher: object
  calls: list

  def __call__(self, params, x, *args, **kwargs):
    self.calls.append(x.shape[0])
    return self.teacher(params, x, *args, **kwargs)

  def with_features(self, params, x, *args, **kwargs):  # LADD: one call, with its features
    self.calls.append(x.shape[0])
    return self.teacher.with_features(params, x, *args, **kwargs)

  def __getattr__(self, name):
    return getattr(self.teacher, name)


def teacher_calls_per_sample(experiment, num_steps: int) -> float:
  """Teacher network evaluations per training sample per step, averaged over ``num_steps`` steps
  (0 for teacher-free rules): each group's loss is traced with a counting teacher (examples
  evaluated over the batch size) and weighted by the share of steps that update the group (two
  time-scale rules skip some)."""
  objective = experiment.objective
  if 'teacher' not in {f.name for f in dataclasses.fields(objective)} or objective.teacher is None:
    return 0
  state = experiment.abstract_state()
  batch = sharding.global_batch(next(experiment.data), experiment.mesh)
  batch_size = jax.tree.leaves(batch)[0].shape[0]
  total = 0.0
  for group in objective.groups:
    calls = []
    counting = dataclasses.replace(objective, teacher=_CountingTeacher(objective.teacher, calls))
    jax.eval_shape(lambda params, group=group, counting=counting: counting.loss(
        group, params, state['ema'], experiment.teacher_params, batch, experiment.train_rng,
        jnp.zeros((), jnp.int32)), state['params'])
    share = np.mean([bool(objective.trains(group, step)) for step in range(num_steps)])
    total += sum(calls) / batch_size * share
  return total


def coupling_teacher_evals(config) -> int:
  """Teacher network evaluations spent solving the ODE couplings of a ``couplings`` data set."""
  if config.data.name != 'couplings':
    return 0
  steps = config.data.ode_steps
  per_pair = 2 * steps - 1 if config.data.get('ode_method', 'heun') == 'heun' else steps
  return config.data.num_pairs * per_pair


def round_end_metrics(workdir: str, objective, ks) -> dict:
  """Progressive distillation: each k-step figure from the in-loop evaluation at the end of the
  round whose student samples in k steps (the paper's reporting); the last round's k from the
  final evaluation."""
  records = {}
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    for line in f:
      record = json.loads(line)
      records.setdefault(record['step'], {}).update(record)
  metrics = {}
  for k in ks:
    if k > objective.initial_steps or k <= objective.final_steps:
      continue
    round_end = objective.steps_per_round * (int(np.log2(objective.initial_steps // k)) + 1)
    metrics.update({name: value for name, value in records[round_end].items()
                    if name.startswith('eval/') and name.endswith(f'_{k}step')})
  return metrics


def generator_update_every(config) -> int:
  """N of a two time-scale rule (its generator trains 1 step in N: DMD2, LADD), else 1."""
  objective = config.objective
  return max(objective.get('fake_score_updates_per_generator_update', 1),
             objective.get('discriminator_updates_per_generator_update', 1))


def rule_config(rule: str, data: str, num_steps: int | None, ks, runs_dir: str):
  """``(config, workdir)`` of the rule's run on ``data``: the config ``<rule>_<data>`` (a rule
  ``name:variant`` names ``<name>_<data>:<variant>``), shortened to ``num_steps`` (0: as
  configured) with its schedules, evaluated at ``ks`` at the end only."""
  name, _, variant = rule.partition(':')
  config = configs.get_config(f'{name}_{data}' + (f':{variant}' if variant else ''))
  config.train.sample_every = 0
  config.eval.update(every=0, steps=tuple(config.eval.steps) if rule in EVAL_STEPS_FROM_CONFIG
                     else tuple(ks))
  if num_steps:
    original_steps = config.train.num_steps
    rounds = -(-original_steps // config.objective.get('steps_per_round', 1))
    config.train.num_steps = num_steps
    # An EMA whose horizon is at most a tenth of the shortened run's updates of the network (a
    # group's EMA moves only when it trains: 1 step in N for two time-scale rules).
    updates = num_steps / generator_update_every(config)
    config.train.ema_decay = min(config.train.ema_decay, max(1.0 - 10.0 / updates, 0.0))
    if 'total_steps' in config.objective:  # consistency training's discretisation curriculum
      config.objective.total_steps = num_steps
    if 'steps_per_round' in config.objective:  # progressive distillation: same number of rounds
      config.objective.steps_per_round = max(num_steps // rounds, 1)
    if 'start_stage' in config.objective:  # TCM: continue the shortened stage-1 run's schedule
      config.objective.start_stage = num_steps // config.objective.stage_steps
    if 'reflow_steps' in config.objective:  # SlimFlow: both stages and the annealing shrink alike
      scale = num_steps / original_steps
      config.objective.reflow_steps = int(config.objective.reflow_steps * scale)
      config.objective.annealing_steps = max(int(config.objective.annealing_steps * scale), 1)
  if 'steps_per_round' in config.objective:
    config.eval.every = config.objective.steps_per_round
  if rule in TEACHER_RULE:
    config.teacher.workdir = os.path.join(runs_dir, f'{TEACHER_RULE[rule]}_{data}')
    if not os.path.isdir(config.teacher.workdir):
      raise FileNotFoundError(f'{rule} distils the {TEACHER_RULE[rule]} run '
                              f'{config.teacher.workdir}: run --rules {TEACHER_RULE[rule]} first')
  return config, os.path.join(runs_dir, f'{rule.replace(":", "_")}_{data}')


def run_rule(rule: str, data: str, num_steps: int | None, ks, runs_dir: str) -> dict:
  config, workdir = rule_config(rule, data, num_steps, ks, runs_dir)
  progressive = 'steps_per_round' in config.objective
  shutil.rmtree(workdir, ignore_errors=True)
  start = time.time()
  state = train.train_and_evaluate(config, workdir)
  seconds = time.time() - start
  experiment = experiment_lib.Experiment(config, workdir)
  evaluator = evaluate.RunEvaluator(experiment)
  metrics = evaluator.evaluate(sampling_params(state))
  if progressive:
    metrics.update(round_end_metrics(workdir, experiment.objective, ks))
  params = sum(x.size for x in jax.tree.leaves(state['params'][experiment.objective.network_group]))
  calls = teacher_calls_per_sample(experiment, config.train.num_steps)
  row = {'rule': rule, 'train_steps': config.train.num_steps, 'train_seconds': seconds,
         'ema_decay': config.train.ema_decay,
         'teacher_evals': (calls * config.data.batch_size * config.train.num_steps +
                           coupling_teacher_evals(config)),
         'student_params': int(params), **metrics}
  if rule in TEACHER_RULE:
    row['teacher_run'] = TEACHER_RULE[rule]
  return row


def table(rows, metric: str, ks) -> str:
  """The markdown table (and, for gmm2d, the noise floor and 1-step SWD line); each row beside its
  own teacher (InstaFlow's is the 2-rectified flow; teacher-free iCT beside the data's teacher),
  straightness where measured."""
  data_teacher = next((r[f'eval/{metric}_teacher'] for r in rows
                       if f'eval/{metric}_teacher' in r and 'teacher_run' not in r), float('nan'))
  lines = [f'| rule | {" | ".join(f"{metric.upper()} {k}-step" for k in ks)} | teacher 35 NFE '
           f'| steps | wall-clock | teacher evals | student params |',
           '| --- ' * (len(ks) + 6) + '|']
  for r in rows:
    values = ' | '.join(f'{r[f"eval/{metric}_{k}step"]:.4g}' if f'eval/{metric}_{k}step' in r
                        else '–' for k in ks)
    teacher = r.get(f'eval/{metric}_teacher', data_teacher)
    lines.append(f'| {r["rule"]} | {values} | {teacher:.4g} | {r["train_steps"]} | '
                 f'{r["train_seconds"]:.0f} s | {r["teacher_evals"]:.3g} | '
                 f'{r["student_params"]:,} |')
  if metric == 'fd':
    lines.append(f'\nsampling-noise floor: FD {rows[0]["eval/fd_floor"]:.2g}, '
                 f'SWD {rows[0]["eval/swd_floor"]:.2g}; SWD 1-step: ' +
                 ', '.join(f'{r["rule"]} {r["eval/swd_1step"]:.3g}' for r in rows) +
                 f', teacher {rows[0].get("eval/swd_teacher", np.nan):.3g}')
  straight = [r for r in rows if 'eval/straightness' in r]
  if straight:
    lines.append('straightness (student / its teacher): ' + ', '.join(
        f'{r["rule"]} {r["eval/straightness"]:.2g} / {r.get("eval/straightness_teacher", np.nan):.2g}'
        for r in straight))
  return '\n'.join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data', choices=('gmm2d', 'digits'), default='gmm2d')
  parser.add_argument('--rules', nargs='+', default=[','.join(RULES)],
                      help='rules, space- or comma-separated (a pipeline\'s first run first)')
  parser.add_argument('--num_steps', type=int, default=0, help='shorten every run (0: config)')
  parser.add_argument('--runs_dir', default=os.path.join(REPO, 'runs', 'rules_table'),
                      help='where the runs\' workdirs go')
  args = parser.parse_args()
  ks = (1, 2, 4)
  out = os.path.join(REPO, 'experiments', 'results', f'rules_{args.data}.json')
  os.makedirs(os.path.dirname(out), exist_ok=True)
  rows = {}
  if os.path.exists(out):  # rows of rules not re-run this time are kept
    with open(out) as f:
      rows = {r['rule']: r for r in json.load(f)['rows']}
  for rule in [r for arg in args.rules for r in arg.split(',') if r]:
    if rule not in RULES:
      raise SystemExit(f'unknown rule {rule!r}; known: {", ".join(RULES)}')
    rows[rule] = run_rule(rule, args.data, args.num_steps, ks, args.runs_dir)
    ordered = [rows[r] for r in RULES if r in rows]
    with open(out, 'w') as f:
      json.dump({'device': jax.devices()[0].device_kind, 'rows': ordered}, f, indent=2)
  print(table(ordered, 'fid' if args.data == 'digits' else 'fd', ks))
  print(f'wrote {out}')


if __name__ == '__main__':
  main()
