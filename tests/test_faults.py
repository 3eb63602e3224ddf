"""Faults and bad input thrown at the trainer as a user's cluster would: each is survived with
nothing lost or refused with one ``fastgen: error:`` line (no traceback), and nothing written.
Checkpoint, coupling-shard and torch-file faults have their own modules
(test_checkpoint_faults.py, test_couplings.py, teachers/test_torch_files_faults.py)."""

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastgen import checkpoint, inference, metrics, settings, train, workdir
from fastgen import experiment as experiment_lib
from fastgen.evaluation import evaluator as evaluator_lib
from tests.cli_runs import REPO, run_cli
from tests.tiny_config import get_config as tiny_config


def _one_error_line(code, err, *needles):
  assert code == 1, err[-3000:]
  assert 'Traceback' not in err, err[-3000:]
  lines = [l for l in err.splitlines() if l.startswith('fastgen: error:')]
  assert len(lines) == 1, err[-3000:]
  for needle in needles:
    assert needle in lines[0], lines[0]
  return lines[0]


def _listing(path):
  return sorted(str(p.relative_to(path)) for p in path.rglob('*')) if path.exists() else []


def _trained(tmp_path, name='run', steps=20):
  """A workdir trained for ``steps`` steps (checkpoints every 20), in-process."""
  path = tmp_path / name
  train.train_and_evaluate(tiny_config(num_steps=steps), str(path))
  return path


# ------------------------------------------------------------------------------ settings


@pytest.mark.parametrize('section, key, value, message', [
    ('train', 'checkpoint_every', 0, 'train.checkpoint_every=0 must be >= 1'),
    ('train', 'log_every', 0, 'train.log_every=0 must be >= 1'),
    ('train', 'keep_checkpoints', 0, 'train.keep_checkpoints=0 must be >= 1'),
    ('train', 'num_steps', 0, 'train.num_steps=0 must be >= 1'),
    ('train', 'num_steps', -5, 'train.num_steps=-5 must be >= 1'),
    ('train', 'ema_decay', 1.5, 'train.ema_decay=1.5 must be in [0, 1]'),
    ('data', 'batch_size', 0, 'data.batch_size=0 must be >= 1'),
    ('optim', 'lr', -1e-3, 'optim.lr=-0.001 must be > 0'),
    ('optim', 'lr', 0.0, 'optim.lr=0.0 must be > 0'),
    ('optim', 'lr', float('nan'), 'optim.lr=nan must be a finite number'),
    ('optim', 'b2', 1.0, 'optim.b2=1.0 must be in [0, 1)'),
    ('eval', 'every', -1, 'eval.every=-1 must be >= 0'),
    ('eval', 'steps', (1, 0), 'eval.steps=(1, 0) must be one or more step counts >= 1'),
    ('sample', 'batch_size', 0, 'sample.batch_size=0 must be >= 1'),
])
def test_each_bad_setting_is_named(section, key, value, message):
  config = tiny_config()
  config[section][key] = value
  found = settings.problems(config)
  assert len(found) == 1 and found[0].startswith(message), found


def test_every_packaged_config_has_valid_settings():
  from fastgen import configs
  for name in configs.names():
    assert settings.problems(configs.get_config(name)) == [], name


def test_bad_settings_are_one_line_and_write_nothing(tmp_path):
  start = time.time()
  code, _, err = run_cli(tmp_path / 'run', '--config.train.checkpoint_every=0',
                         '--config.optim.lr=-1.0', '--config.data.batch_size=0')
  _one_error_line(code, err, 'train.checkpoint_every=0', 'optim.lr=-1.0', 'data.batch_size=0')
  assert not (tmp_path / 'run').exists()
  print(f'refused in {time.time() - start:.1f} s')


def test_num_steps_already_reached_trains_nothing_and_rewrites_nothing(tmp_path):
  path = _trained(tmp_path)
  before = {p: p.read_bytes() for p in path.rglob('*') if p.is_file() and p.name != 'lock'}
  state = train.train_and_evaluate(tiny_config(num_steps=10), str(path))
  assert int(state['step']) == 20
  after = {p: p.read_bytes() for p in path.rglob('*') if p.is_file() and p.name != 'lock'}
  assert after == before  # config.json, metrics.jsonl, checkpoints: untouched


# ------------------------------------------------------------------------------- workdir


def test_workdir_that_is_a_file_or_under_one_is_one_line(tmp_path):
  (tmp_path / 'file').write_text('not a directory')
  code, _, err = run_cli(tmp_path / 'file')
  _one_error_line(code, err, 'file exists and is not a directory')
  code, _, err = run_cli(tmp_path / 'file' / 'run')
  _one_error_line(code, err, 'lies under a file')


@contextlib.contextmanager
def _read_only(path):
  """``path`` read-only for this user: chmod 555, or for root (who writes through modes) the
  immutable attribute; the test is skipped where neither is available."""
  if os.geteuid() != 0:
    os.chmod(path, 0o555)
    try:
      yield
    finally:
      os.chmod(path, 0o755)
    return
  if shutil.which('chattr') is None or subprocess.run(['chattr', '+i', str(path)],
                                                      capture_output=True).returncode != 0:
    pytest.skip('root, and no immutable attribute on this file system')
  try:
    yield
  finally:
    subprocess.run(['chattr', '-i', str(path)], check=True)


def test_read_only_workdir_is_one_line(tmp_path):
  (tmp_path / 'run').mkdir()
  with _read_only(tmp_path / 'run'):
    code, _, err = run_cli(tmp_path / 'run')
  _one_error_line(code, err, f'{tmp_path / "run"} is not writable')
  assert _listing(tmp_path / 'run') == []


def test_second_trainer_is_refused_naming_the_holder(tmp_path):
  path = tmp_path / 'run'
  path.mkdir()
  with workdir.Lock(str(path)):
    holder = json.loads((path / 'lock').read_text())
    with pytest.raises(workdir.WorkdirError, match=f'pid {os.getpid()} on host'):
      with workdir.Lock(str(path)):
        pass
    code, _, err = run_cli(path)
    _one_error_line(code, err, 'in use by another trainer', f'pid {holder["pid"]}')
  assert _listing(path) == ['lock']  # the refused trainer wrote nothing
  with workdir.Lock(str(path)):  # released: the next one takes it
    pass


def test_lock_of_a_killed_trainer_is_taken_over(tmp_path, caplog):
  path = tmp_path / 'run'
  path.mkdir()
  holder = subprocess.Popen(  # takes the lock and waits, as a trainer would
      [sys.executable, '-c', 'import sys, time; from fastgen import workdir; '
       f'lock = workdir.Lock({str(path)!r}).__enter__(); print(flush=True); time.sleep(600)'],
      cwd=REPO, stdout=subprocess.PIPE, text=True)
  holder.stdout.readline()
  with pytest.raises(workdir.WorkdirError, match=f'pid {holder.pid} on host'):
    workdir.Lock(str(path)).__enter__()
  holder.kill()
  holder.wait()
  with caplog.at_level('WARNING'):
    train.train_and_evaluate(tiny_config(num_steps=20), str(path))
  assert f'took over the lock of {path}' in caplog.text and f'pid {holder.pid}' in caplog.text
  assert (path / 'lock').read_text() == ''  # released cleanly at the end


# ------------------------------------------------------------------------- metrics files


def test_torn_last_metrics_line_is_dropped_and_the_run_resumes(tmp_path):
  path = _trained(tmp_path, steps=40)
  with open(path / 'metrics.jsonl', 'a') as f:
    f.write('{"step": 41, "wall_ti')  # a kill in the middle of a write
  train.train_and_evaluate(tiny_config(num_steps=60), str(path))
  assert [r['step'] for r in metrics.read_metrics(str(path / 'metrics.jsonl'))] == [20, 40, 60]


def test_garbage_inside_metrics_file_is_named_and_nothing_written(tmp_path):
  path = _trained(tmp_path, steps=40)
  lines = (path / 'metrics.jsonl').read_text().splitlines(keepends=True)
  (path / 'metrics.jsonl').write_text(lines[0] + 'garbage\n' + ''.join(lines[1:]))
  before = _listing(path)
  code, _, err = run_cli(path, '--config.train.num_steps=60', devices=1)
  _one_error_line(code, err, f'{path / "metrics.jsonl"} line 2 is not a metrics record')
  assert _listing(path) == before
  assert checkpoint.Checkpointer(str(path)).steps() == [20, 40]


def test_unreadable_metrics_of_the_best_checkpoint_are_named(tmp_path):
  path = tmp_path / 'run'
  config = tiny_config(num_steps=20)
  config.eval.update(every=20, features='exact', num_samples=256, batch_size=256, steps=(2,),
                     teacher_steps=0)
  train.train_and_evaluate(config, str(path))
  (path / 'checkpoints_best' / '20' / 'metrics' / 'metrics').write_text('{"eval/swd')
  config.train.num_steps = 40
  with pytest.raises(checkpoint.CheckpointError, match=f"best checkpoint's metrics in "
                     f"{path / 'checkpoints_best'} are unreadable"):
    train.train_and_evaluate(config, str(path))
  assert checkpoint.Checkpointer(str(path)).steps() == [20]


# -------------------------------------------------------------------------------- teacher


def test_teacher_whose_config_does_not_fit_its_checkpoint_is_named(tmp_path):
  teacher = _trained(tmp_path, 'teacher')
  config = json.loads((teacher / 'config.json').read_text())
  config['network']['hidden'] = 32  # the checkpoint's network has 64
  (teacher / 'config.json').write_text(json.dumps(config))
  config = tiny_config()
  config.teacher.update(kind='checkpoint', workdir=str(teacher))
  with pytest.raises(checkpoint.CheckpointError, match=r'teacher .*config.json does not fit its '
                     r'checkpoint: .* has shape \(64,\) in the checkpoint but \(32,\)'):
    experiment_lib.Experiment(config)


# ---------------------------------------------------------------------------- non-finite


def _skip_counter(limit):
  counter = train._SkippedUpdates(('student', 'fake_score'), limit)  # pylint: disable=protected-access
  feed = lambda student, fake: counter.update({'student/finite': jnp.array(student),
                                               'fake_score/finite': jnp.array(fake)})
  return counter, feed


def test_skipped_updates_are_counted_warned_and_stopped(caplog):
  counter, feed = _skip_counter(limit=4)
  for finite in (True, False, True, False, False):
    feed(finite, True)
  with caplog.at_level('WARNING'):
    assert counter.read(5) == {'student/skipped_updates': 3, 'fake_score/skipped_updates': 0}
  assert 'step 5: skipped 3 update(s) of student' in caplog.text
  assert counter.read(5) == {'student/skipped_updates': 0, 'fake_score/skipped_updates': 0}
  feed(False, True)  # 3 in a row now: under the limit of 4
  assert counter.read(6)['student/skipped_updates'] == 1
  feed(False, True)  # the 4th in a row
  with pytest.raises(train.NonFiniteLossError, match='4 consecutive updates of student'):
    counter.read(7)


def test_diverging_run_with_skip_nonfinite_stops_and_logs_its_skips(tmp_path, caplog):
  config = tiny_config(num_steps=200)
  config.optim.update(lr=1e30, grad_clip=0.0, warmup_steps=1)
  config.train.update(skip_nonfinite=True, max_consecutive_skips=15, log_every=5)
  with caplog.at_level('WARNING'), pytest.raises(
      train.NonFiniteLossError, match='consecutive updates of denoiser were skipped'):
    train.train_and_evaluate(config, str(tmp_path))
  assert 'update(s) of denoiser since the last report' in caplog.text
  records = metrics.read_metrics(str(tmp_path / 'metrics.jsonl'))
  assert records and records[-1]['train/denoiser/skipped_updates'] > 0


def test_evaluator_names_non_finite_samples():
  evaluator = evaluator_lib.Evaluator(num_samples=8, batch_size=4, steps=(2,))
  samples = lambda rng, num, k: jnp.full((num, 2), jnp.nan).at[0].set(0.0)
  with pytest.raises(evaluator_lib.NonFiniteSamplesError,
                     match='the 2-step samples hold 6 non-finite'):
    list(evaluator.batches(samples, jax.random.key(0), 2))


def test_sample_mode_refuses_non_finite_samples_and_writes_nothing(tmp_path):
  config = tiny_config()
  experiment = experiment_lib.Experiment(config)
  state = experiment.initial_state()
  state['ema']['denoiser'] = jax.tree.map(lambda p: jnp.full_like(p, jnp.nan),
                                          state['ema']['denoiser'])
  saver = checkpoint.Checkpointer(str(tmp_path), keep=1)
  saver.save(7, state, experiment.data.get_state())
  saver.close()
  with pytest.raises(evaluator_lib.NonFiniteSamplesError,
                     match='of the checkpoint of step 7 hold NaN or inf'):
    inference.sample_to_workdir(config, str(tmp_path))
  assert not (tmp_path / 'samples').exists()


# -------------------------------------------------------------------------------- signals


def _wait_for(proc, condition, what, timeout=120):
  deadline = time.time() + timeout
  while not condition():
    assert proc.poll() is None, f'ended before {what}: {proc.stderr.read()[-2000:]}'
    assert time.time() < deadline, f'no {what}'
    time.sleep(0.02)


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_signal_during_start_up_is_one_line(tmp_path, signum):
  proc = run_cli(tmp_path, devices=1, wait=False)
  time.sleep(0.5)  # importing JAX: long before the first step
  proc.send_signal(signum)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 128 + signum, err[-2000:]
  assert 'Traceback' not in err, err[-2000:]
  assert f'fastgen: interrupted by {signal.Signals(signum).name}' in err, err[-2000:]
  assert not (tmp_path / 'checkpoints').exists() or not checkpoint.Checkpointer(
      str(tmp_path)).steps()


def test_ctrl_c_during_training_saves_and_exits_with_one_line(tmp_path):
  proc = run_cli(tmp_path, '--config.train.num_steps=100000',
                 '--config.train.checkpoint_every=100000', devices=1, wait=False)
  _wait_for(proc, lambda: (tmp_path / 'metrics.jsonl').exists(), 'a logged step')
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 0 and 'Traceback' not in err, err[-2000:]
  assert 'SIGINT: saved step' in err, err[-2000:]
  assert checkpoint.Checkpointer(str(tmp_path)).steps()[-1] >= 20


@pytest.mark.slow
def test_soak_random_kills_end_bit_identical(tmp_path):
  """Killed (SIGKILL, SIGTERM, SIGINT) at 24 random moments, resumed each time, every run ends
  equal bit for bit to an uninterrupted one, with one metrics record per logged step. A run that
  finishes before its next kill is checked and a new one started; kills come within the time the
  uninterrupted run took, so the test does not depend on how fast this machine trains."""
  steps = ['--config.train.num_steps=400', '--config.train.checkpoint_every=20']
  start = time.monotonic()
  code, _, err = run_cli(tmp_path / 'straight', *steps, devices=1)
  assert code == 0, err[-2000:]
  longest = time.monotonic() - start
  expected = jax.tree.leaves(checkpoint.load_params(str(tmp_path / 'straight'), ()))
  rng = random.Random(0)
  kills, paths = 0, []
  while kills < 24:
    path = tmp_path / f'killed{len(paths)}'
    paths.append(path)
    while kills < 24:
      proc = run_cli(path, *steps, devices=1, wait=False)
      try:
        proc.wait(timeout=rng.uniform(0.5, longest))
      except subprocess.TimeoutExpired:
        proc.send_signal(rng.choice([signal.SIGKILL, signal.SIGTERM, signal.SIGINT]))
        proc.communicate(timeout=120)
        kills += 1
        continue
      _, err = proc.communicate()
      assert proc.returncode == 0, err[-2000:]
      break  # finished before its kill
    code, _, err = run_cli(path, *steps, devices=1)  # the rest of the run, if any
    assert code == 0, err[-2000:]
  print(f'{kills} kills over {len(paths)} runs')
  for path in paths:
    for a, b in zip(expected, jax.tree.leaves(checkpoint.load_params(str(path), ())),
                    strict=True):
      np.testing.assert_array_equal(a, b)
    records = metrics.read_metrics(str(path / 'metrics.jsonl'))
    assert [r['step'] for r in records] == list(range(20, 401, 20))
