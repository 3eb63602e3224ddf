"""The digits convergence study: every rule's FID against training steps and teacher evaluations.

  python experiments/convergence.py                    # every rule at its config's length: hours
  python experiments/convergence.py --rules dmd2 sim --num_steps=2000 --eval_every=250
  python experiments/convergence.py --plot_only        # table and figure from the JSON
  python experiments/convergence.py --rules sida sim --noise_seeds=4  # FID's spread, no training

Each rule trains its digits config from the same teacher (``runs/edm_digits``; make it with
``python -m fastgen.main --config=configs/edm_digits.py --workdir=runs/edm_digits``), shortened to
``--num_steps`` when given with the schedule changes of ``experiments/rules_table.py``, in
``runs/convergence/<rule>_digits``, with the in-loop evaluation every ``--eval_every`` steps (FID
in the digits-classifier features, 2000 samples, at the 1, 2 and 4 steps the rule samples at; the
teacher's Heun-35-NFE FID once). Teacher evaluations at step s are s times the rule's teacher
calls per step plus the ODE solves of its coupling set (counted as rules_table does). A run that
was interrupted resumes from its last checkpoint (``--fresh`` starts it over). InstaFlow distils
the 2-rectified flow of this study's 'reflow' run, and TCM truncates its 'ect' run.

Convergence criterion: a rule has converged at the first evaluation after which no later
evaluation lowers its curve's FID by more than 5% (``TOLERANCE``); a rule whose last evaluation
is more than 5% below every earlier one is still improving at its budget. The curve is the
1-step FID, except for the rules whose target is at another k (``CURVE_STEPS``: 2-RF at 2 steps).
Progressive distillation's k-step figures in the table are those of the round whose student
samples in k steps, as the paper reports them (its final 1-step student sampled at 4 steps is
not a 4-step model).

Writes ``experiments/results/convergence_digits.json`` (one row per rule, rows of rules not run
this time kept) and ``docs/convergence_digits.png`` (FID against training steps and against
teacher evaluations, one curve per rule, the teacher's 35-NFE FID as a line), and prints the
markdown table with each rule's target from issue 15 and whether it holds.

FID of 2000 samples moves with the evaluation's noise alone (the digits teacher: 1.58 with the
study's noise, 1.64-1.93 with four other draws). ``--noise_seeds=N`` re-evaluates the named
rules' final checkpoints and their teacher with ``eval.seed`` 1..N (the study's is 0), stores
the figures in each row (``noise``) and prints mean ± standard deviation over the N + 1 draws.
"""

import argparse
import json
import math
import os
import shutil
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import matplotlib  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

RULES = ('sid', 'sida', 'sim', 'uni_instruct', 'dmd', 'dmd2', 'ladd', 'cd', 'ct', 'pd', 'reflow',
         'instaflow', 'slimflow', 'slimflow:one_step_regression')
KS = (1, 2, 4)
CURVE_STEPS = {'reflow': 2}
TOLERANCE = 0.05
RESULTS = os.path.join(REPO, 'experiments', 'results', 'convergence_digits.json')
FIGURE = os.path.join(REPO, 'docs', 'convergence_digits.png')


def read_evaluations(workdir: str) -> list[dict]:
  """The run's in-loop evaluations, in step order: ``{'step', 'wall_time', 'eval/...'}``."""
  by_step = {}
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    for line in f:
      if line.strip():
        record = json.loads(line)
        by_step.setdefault(record['step'], {}).update(record)
  return [r for _, r in sorted(by_step.items()) if any(k.startswith('eval/fid_') for k in r)]


def read_rows() -> dict:
  """The study's rows by rule, as the JSON holds them now ({} before the first run)."""
  if not os.path.exists(RESULTS):
    return {}
  with open(RESULTS) as f:
    return {r['rule']: r for r in json.load(f)['rows']}


def converged_step(steps, values, tolerance: float = TOLERANCE):
  """The first step after which no later value is more than ``tolerance`` below it; ``None``
  when that is only the last one while the last value is more than ``tolerance`` below every
  earlier one (still improving)."""
  finite = [(s, v) for s, v in zip(steps, values) if math.isfinite(v)]
  for i, (step, value) in enumerate(finite):
    if all(later >= (1.0 - tolerance) * value for _, later in finite[i + 1:]):
      still_improving = (i == len(finite) - 1 and i > 0 and
                         value < (1.0 - tolerance) * min(v for _, v in finite[:i]))
      return None if still_improving else step
  return None


def target(row: dict, rows: dict) -> tuple[str, bool | None]:
  """Issue 15's target for the rule, as text, and whether the row's final evaluation meets it
  (``None`` when it cannot be judged from the rows; LADD, from issue 18, has no target)."""
  rule, teacher = row['rule'], row.get('fid_teacher', math.nan)
  fid = {k: row['final'].get(f'eval/fid_{k}step', math.inf) for k in KS}
  if rule in ('sid', 'sida', 'dmd', 'dmd2', 'sim', 'uni_instruct'):
    return '1-step <= teacher', fid[1] <= teacher
  if rule in ('cd', 'ct', 'pd', 'instaflow'):
    return ('1-step <= 1.3x, best k <= 1.1x',
            fid[1] <= 1.3 * teacher and min(fid.values()) <= 1.1 * teacher)
  if rule == 'reflow':
    return '2-step <= 1.3x', fid[2] <= 1.3 * teacher
  if rule == 'slimflow':
    baseline = rows.get('slimflow:one_step_regression')
    if baseline is None:
      return '1-step < its one-step baseline', None
    return '1-step < its one-step baseline', fid[1] < baseline['final']['eval/fid_1step']
  return '', None


def run(rule: str, num_steps: int, eval_every: int, runs_dir: str, fresh: bool) -> dict:
  """Trains (or resumes) the rule's digits run with in-loop evaluations; its row."""
  from fastgen import experiment as experiment_lib  # pylint: disable=g-import-not-at-top
  from fastgen import train  # pylint: disable=g-import-not-at-top
  import rules_table  # pylint: disable=g-import-not-at-top

  config, workdir = rules_table.rule_config(rule, 'digits', num_steps, KS, runs_dir)
  if 'steps_per_round' in config.objective:  # PD: evaluations that end each round too
    rounds_per_eval = max(config.objective.steps_per_round // eval_every, 1)
    config.eval.every = config.objective.steps_per_round // rounds_per_eval
  else:
    config.eval.every = eval_every
  if fresh:
    shutil.rmtree(workdir, ignore_errors=True)
  start = time.time()
  train.train_and_evaluate(config, workdir)
  seconds = time.time() - start
  experiment = experiment_lib.Experiment(config, workdir)
  per_step = (rules_table.teacher_calls_per_sample(experiment, config.train.num_steps) *
              config.data.batch_size)
  offset = rules_table.coupling_teacher_evals(config)
  evaluations = read_evaluations(workdir)
  teacher_fid = next((e['eval/fid_teacher'] for e in evaluations if 'eval/fid_teacher' in e),
                     math.nan)
  curve_k = CURVE_STEPS.get(rule, 1)
  curve = [e.get(f'eval/fid_{curve_k}step', math.nan) for e in evaluations]
  steps = [e['step'] for e in evaluations]
  best = min(range(len(curve)), key=lambda i: curve[i] if math.isfinite(curve[i]) else math.inf)
  final = {k: v for k, v in evaluations[-1].items() if k.startswith('eval/fid_')}
  if 'steps_per_round' in config.objective:  # PD: each k from the round whose student takes k
    final.update(rules_table.round_end_metrics(workdir, experiment.objective, KS))
  return {
      'rule': rule, 'train_steps': config.train.num_steps, 'eval_every': config.eval.every,
      'ema_decay': config.train.ema_decay,
      'seconds_this_call': seconds, 'wall_clock': evaluations[-1].get('wall_time', math.nan),
      'teacher_evals_per_step': per_step, 'coupling_teacher_evals': offset,
      'fid_teacher': teacher_fid, 'curve_steps': curve_k,
      'steps': steps, 'teacher_evals': [offset + per_step * s for s in steps],
      'fid': {str(k): [e.get(f'eval/fid_{k}step', math.nan) for e in evaluations] for k in KS},
      'final': final,
      'best_step': steps[best], 'best_fid': curve[best],
      'converged_step': converged_step(steps, curve),
  }


def noise_spread(rule: str, num_steps: int, runs_dir: str, seeds) -> dict:
  """The rule's final checkpoint and its teacher re-measured with other evaluation noise
  (``eval.seed``; the study's own is 0): FID at the rule's curve k for each seed."""
  from fastgen import checkpoint, evaluate  # pylint: disable=g-import-not-at-top
  from fastgen import experiment as experiment_lib  # pylint: disable=g-import-not-at-top
  from fastgen import step as step_lib  # pylint: disable=g-import-not-at-top
  import rules_table  # pylint: disable=g-import-not-at-top

  config, workdir = rules_table.rule_config(rule, 'digits', num_steps, KS, runs_dir)
  k = CURVE_STEPS.get(rule, 1)
  config.eval.steps = (k,)
  experiment = experiment_lib.Experiment(config, workdir)
  try:
    _, state = experiment_lib.restore_latest(experiment, workdir)
  except checkpoint.CheckpointError as e:
    raise SystemExit(f'--noise_seeds: {e}') from None
  params = step_lib.sampling_params(state)
  spread = {'seeds': list(seeds), 'fid': [], 'fid_teacher': []}
  for seed in seeds:
    config.eval.seed = seed  # the experiment's config: the evaluator reads it
    metrics = evaluate.RunEvaluator(experiment).evaluate(params)
    spread['fid'].append(metrics[f'eval/fid_{k}step'])
    spread['fid_teacher'].append(metrics.get('eval/fid_teacher', math.nan))  # nan: no teacher
    print(f'{rule}: eval.seed {seed}: {k}-step FID {spread["fid"][-1]:.3f}, teacher '
          f'{spread["fid_teacher"][-1]:.3f}', flush=True)
  return spread


def spread_line(row: dict, rows: dict) -> str:
  """'rule: k-step FID mean ± std (min-max) over n noise seeds, teacher ...' of a row's spread,
  with the study's own evaluation (seed 0) included. A rule without a teacher (iCT) is set
  beside the data's teacher on the same seeds, from another row's spread."""
  k = row['curve_steps']
  student = [row['final'][f'eval/fid_{k}step']] + row['noise']['fid']
  teacher = [row['fid_teacher']] + row['noise']['fid_teacher']
  if not all(map(math.isfinite, teacher)):
    teacher = next(([r['fid_teacher']] + r['noise']['fid_teacher'] for r in rows.values()
                    if r['rule'] != 'instaflow' and r.get('noise', {}).get('seeds') ==
                    row['noise']['seeds'] and all(map(math.isfinite, r['noise']['fid_teacher']))),
                   teacher)
  describe = lambda v: (f'{np.mean(v):.3f} ± {np.std(v, ddof=1):.3f} ({min(v):.3f}-'
                        f'{max(v):.3f})')
  wins = sum(s <= t for s, t in zip(student, teacher))
  return (f'{row["rule"]}: {k}-step FID {describe(student)}, teacher {describe(teacher)} over '
          f'{len(student)} noise seeds; student <= teacher at {wins} of {len(student)}')


def data_teacher_fid(rows: dict) -> float:
  """The data's teacher's 35-NFE FID, from the rows (InstaFlow's teacher is the 2-RF)."""
  return next((r['fid_teacher'] for r in rows.values() if math.isfinite(r['fid_teacher'])
               and r['rule'] != 'instaflow'), math.nan)


def table(rows: dict) -> str:
  lines = ['| rule | FID 1-step | FID 2-step | FID 4-step | best (step) | converged | steps | '
           'wall-clock | teacher evals | target | met |', '| --- ' * 11 + '|']
  teacher = data_teacher_fid(rows)
  for rule in [r for r in RULES if r in rows]:
    row = rows[rule]
    fids = ' | '.join(f'{row["final"][f"eval/fid_{k}step"]:.3g}'
                      if f'eval/fid_{k}step' in row['final'] else '–' for k in KS)
    converged = (f'{row["converged_step"]}' if row['converged_step'] is not None
                 else 'still improving')
    text, met = target(row, rows)
    lines.append(
        f'| {rule} | {fids} | {row["best_fid"]:.3g} ({row["best_step"]}) | {converged} | '
        f'{row["train_steps"]} | {row["wall_clock"]:.0f} s | '
        f'{row["teacher_evals"][-1]:.3g} | {text} | {"–" if met is None else "yes" if met else "no"} |')
  lines.append(f'\nteacher (edm_digits, Heun 35 NFE): FID {teacher:.3g}; InstaFlow\'s own teacher '
               'is the 2-rectified flow')
  return '\n'.join(lines)


def plot(rows: dict, out: str) -> None:
  fig, (by_step, by_evals) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=110)
  teacher = data_teacher_fid(rows)
  colors = plt.get_cmap('tab20').colors  # one color per rule: tab10 repeats after ten
  for i, rule in enumerate(r for r in RULES if r in rows):
    row = rows[rule]
    k = row['curve_steps']
    label = rule if k == 1 else f'{rule} ({k}-step)'
    style = dict(marker='o', markersize=3, color=colors[i % len(colors)], label=label)
    by_step.plot(row['steps'], row['fid'][str(k)], **style)
    if row['teacher_evals'][-1] > 0:
      by_evals.plot(row['teacher_evals'], row['fid'][str(k)], **style)
  for ax, xlabel in ((by_step, 'training steps'), (by_evals, 'teacher network evaluations')):
    if math.isfinite(teacher):
      ax.axhline(teacher, color='black', linestyle='--', label=f'teacher, 35 NFE ({teacher:.3g})')
    ax.set_yscale('log', nonpositive='clip')
    ax.set_xlabel(xlabel)
    ax.set_ylabel('FID (digits features), 1-step unless noted')
    ax.grid(True, which='both', alpha=0.3)
  by_evals.set_xscale('log')
  by_step.legend(fontsize=7, ncol=2)
  by_evals.set_title('rules that call a teacher', fontsize=9)
  fig.tight_layout()
  fig.savefig(out)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--rules', nargs='+', default=list(RULES), help='rules (a pipeline\'s '
                      'first run first: reflow before instaflow)')
  parser.add_argument('--num_steps', type=int, default=0, help='shorten every run (0: config)')
  parser.add_argument('--eval_every', type=int, default=250)
  parser.add_argument('--runs_dir', default=os.path.join(REPO, 'runs', 'convergence'))
  parser.add_argument('--fresh', action='store_true', help='start the named runs over')
  parser.add_argument('--plot_only', action='store_true')
  parser.add_argument('--noise_seeds', type=int, default=0, help='re-measure the named rules\' '
                      'final checkpoints (no training) and teacher with eval.seed 1..N')
  args = parser.parse_args()
  rows = read_rows()
  if not args.plot_only:
    unknown = [r for r in args.rules if r not in RULES]
    if unknown:
      raise SystemExit(f'unknown rule {unknown[0]!r}; known: {", ".join(RULES)}')
    if args.noise_seeds and any(r not in rows for r in args.rules):
      raise SystemExit(f'--noise_seeds re-measures trained runs; no row for '
                       f'{next(r for r in args.rules if r not in rows)!r} in {RESULTS}')
    import jax  # pylint: disable=g-import-not-at-top
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    for rule in args.rules:
      if args.noise_seeds:
        row = {**rows[rule], 'noise': noise_spread(rule, rows[rule]['train_steps'],
                                                   args.runs_dir, range(1, args.noise_seeds + 1))}
      else:
        row = run(rule, args.num_steps, args.eval_every, args.runs_dir, args.fresh)
      rows = {**read_rows(), rule: row}  # rows another study process wrote meanwhile are kept
      with open(RESULTS, 'w') as f:
        json.dump({'device': jax.devices()[0].device_kind,
                   'rows': [rows[r] for r in RULES if r in rows]}, f, indent=1)
  if not rows:
    raise SystemExit(f'no rows in {RESULTS}: run some rules first')
  plot(rows, FIGURE)
  print(table(rows))
  for rule in [r for r in RULES if 'noise' in rows.get(r, {})]:
    print(spread_line(rows[rule], rows))
  print(f'wrote {RESULTS} and {FIGURE}')


if __name__ == '__main__':
  main()
