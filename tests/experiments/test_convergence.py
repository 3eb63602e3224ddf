"""The convergence study's criterion, its reading of a run's evaluations, its targets and figure."""

import json
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'experiments'))
import convergence  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_converged_at_the_first_evaluation_no_later_one_improves_by_the_tolerance():
  steps = [250, 500, 750, 1000, 1250]
  # 10 -> 4 -> 3.9 (2.5% better, within 5%) -> 4.1 -> 3.85: converged at 500.
  assert convergence.converged_step(steps, [10, 4, 3.9, 4.1, 3.85]) == 500
  # 3.7 at the end is 7.5% below 4: converged only at the last evaluation, and that last
  # value is more than 5% below every earlier one: still improving.
  assert convergence.converged_step(steps, [10, 4, 3.9, 4.1, 3.7]) is None
  # A curve that got worse at the end converged where its best plateau began.
  assert convergence.converged_step(steps, [10, 4, 3.9, 8, 9]) == 500
  # Non-finite evaluations are skipped, not taken as improvements.
  assert convergence.converged_step(steps, [10, math.nan, 3, 3.05, math.inf]) == 750
  assert convergence.converged_step([250], [5.0]) == 250


def test_evaluations_merge_the_records_of_a_step_and_skip_training_only_steps(tmp_path):
  records = [{'step': 100, 'wall_time': 10.0, 'train/loss': 1.0},
             {'step': 250, 'wall_time': 20.0, 'train/loss': 0.5},
             {'step': 250, 'eval/fid_1step': 7.0, 'eval/fid_teacher': 1.5},
             {'step': 500, 'wall_time': 40.0, 'eval/fid_1step': 5.0}]
  (tmp_path / 'metrics.jsonl').write_text('\n'.join(json.dumps(r) for r in records) + '\n')
  evaluations = convergence.read_evaluations(str(tmp_path))
  assert [e['step'] for e in evaluations] == [250, 500]
  assert evaluations[0] == {'step': 250, 'wall_time': 20.0, 'train/loss': 0.5,
                            'eval/fid_1step': 7.0, 'eval/fid_teacher': 1.5}


def _row(rule, fids, teacher=2.0, steps=(250, 500)):
  return {'rule': rule, 'fid_teacher': teacher, 'curve_steps': 1, 'steps': list(steps),
          'teacher_evals': [128.0 * s for s in steps], 'train_steps': steps[-1],
          'wall_clock': 60.0, 'best_step': steps[-1], 'best_fid': fids[1],
          'converged_step': None, 'fid': {'1': [2 * fids[1], fids[1]]},
          'final': {f'eval/fid_{k}step': v for k, v in fids.items()}}


def test_targets_are_judged_from_the_final_evaluation():
  rows = {'sid': _row('sid', {1: 1.9, 2: 5.0, 4: 9.0}),
          'cd': _row('cd', {1: 2.7, 2: 2.1, 4: 3.0}),    # 1.35x at 1 step: misses 1.3x
          'ct': _row('ct', {1: 2.5, 2: 2.15, 4: 2.3}),   # 1.25x, best 1.075x: meets both
          'reflow': _row('reflow', {1: 40.0, 2: 2.5, 4: 2.2}),
          'slimflow': _row('slimflow', {1: 9.0, 2: 8.0, 4: 7.0})}
  assert convergence.target(rows['sid'], rows)[1] is True
  assert convergence.target(rows['cd'], rows)[1] is False
  assert convergence.target(rows['ct'], rows)[1] is True
  assert convergence.target(rows['reflow'], rows)[1] is True
  assert convergence.target(rows['slimflow'], rows)[1] is None  # no baseline row to judge by
  rows['slimflow:one_step_regression'] = _row('slimflow:one_step_regression',
                                              {1: 10.0, 2: 9.0, 4: 9.0})
  assert convergence.target(rows['slimflow'], rows)[1] is True


def test_table_and_figure_are_made_from_rows(tmp_path):
  rows = {'sid': _row('sid', {1: 1.9, 2: 5.0, 4: 9.0}),
          'ct': dict(_row('ct', {1: 2.5, 2: 2.15, 4: 2.3}), teacher_evals=[0.0, 0.0])}
  text = convergence.table(rows)
  assert '| sid | 1.9 | 5 | 9 | 1.9 (500) | still improving | 500 |' in text
  assert '| ct |' in text and 'FID 2' in text
  out = tmp_path / 'figure.png'
  convergence.plot(rows, str(out))
  assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_spread_line_counts_the_study_evaluation_and_each_noise_seed():
  row = {'rule': 'sim', 'curve_steps': 1, 'final': {'eval/fid_1step': 1.4}, 'fid_teacher': 1.6,
         'noise': {'seeds': [1, 2], 'fid': [1.8, 1.6], 'fid_teacher': [1.7, 1.5]}}
  line = convergence.spread_line(row, {'sim': row})
  # Student 1.4, 1.8, 1.6: mean 1.6, sample std 0.2; teacher 1.6, 1.7, 1.5: mean 1.6, std 0.1.
  assert '1-step FID 1.600 ± 0.200 (1.400-1.800), teacher 1.600 ± 0.100 (1.500-1.700)' in line
  assert 'over 3 noise seeds; student <= teacher at 1 of 3' in line
  # A rule without a teacher (iCT) is set beside the data's teacher on the same seeds.
  ct = {'rule': 'ct', 'curve_steps': 1, 'final': {'eval/fid_1step': 1.55},
        'fid_teacher': math.nan, 'noise': {'seeds': [1, 2], 'fid': [1.65, 1.75], 'fid_teacher': [math.nan, math.nan]}}
  line = convergence.spread_line(ct, {'sim': row, 'ct': ct})
  assert 'teacher 1.600 ± 0.100 (1.500-1.700)' in line and 'at 2 of 3' in line
