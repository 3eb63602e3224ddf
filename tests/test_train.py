"""The generic trainer: it learns, it shards, it resumes bit for bit, and it refuses bad input."""

import json
import os
import signal
import time

import jax
import numpy as np
import pytest

from fastgen import checkpoint, evaluate, sharding, train
from fastgen import experiment as experiment_lib
from fastgen import step as step_lib
from tests.cli_runs import run_cli
from tests.tiny_config import get_config as tiny_config


# ------------------------------------------------------------------ subprocess runs of the CLI


def _final_params(workdir):
  return jax.tree.leaves(checkpoint.load_params(str(workdir), ('params',)))


def _assert_same(a, b, exact=True):
  for x, y in zip(a, b, strict=True):
    if exact:
      np.testing.assert_array_equal(x, y)
    else:
      np.testing.assert_allclose(x, y, rtol=2e-4, atol=2e-5)


def test_one_and_eight_devices_agree(tmp_path):
  code1, _, err1 = run_cli(tmp_path / 'one', devices=1)
  code8, _, err8 = run_cli(tmp_path / 'eight', devices=8)
  assert code1 == 0 and code8 == 0, err1[-2000:] + err8[-2000:]
  _assert_same(_final_params(tmp_path / 'one'), _final_params(tmp_path / 'eight'), exact=False)


def _wait_for_checkpoint(workdir, proc, timeout=120):
  start = time.time()
  directory = workdir / 'checkpoints'
  while time.time() - start < timeout:
    if directory.exists() and any(p.name.isdigit() for p in directory.iterdir()):
      return
    if proc.poll() is not None:
      raise AssertionError(f'run ended before its first checkpoint: {proc.stderr.read()[-2000:]}')
    time.sleep(0.05)
  raise AssertionError('no checkpoint appeared')


# SIGTERM is slow: its save-and-exit is in the default suite as
# tests/test_faults.py::test_ctrl_c_during_training_saves_and_exits_with_one_line.
@pytest.mark.parametrize('how', [pytest.param(signal.SIGTERM, marks=pytest.mark.slow),
                                 signal.SIGKILL])
def test_interrupted_run_resumes_bit_identically(tmp_path, how):
  steps = ['--config.train.num_steps=600', '--config.train.checkpoint_every=100']
  code, _, err = run_cli(tmp_path / 'straight', *steps)
  assert code == 0, err[-2000:]
  proc = run_cli(tmp_path / 'interrupted', *steps, wait=False)
  _wait_for_checkpoint(tmp_path / 'interrupted', proc)
  proc.send_signal(how)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == (0 if how == signal.SIGTERM else -signal.SIGKILL), err[-2000:]
  saved = checkpoint.Checkpointer(str(tmp_path / 'interrupted')).steps()
  assert saved and max(saved) < 600, saved  # it really stopped early
  code, _, err = run_cli(tmp_path / 'interrupted', *steps)
  assert code == 0, err[-2000:]
  assert 'resumed from' in err
  _assert_same(_final_params(tmp_path / 'straight'), _final_params(tmp_path / 'interrupted'))
  records = [json.loads(l) for l in open(tmp_path / 'interrupted' / 'metrics.jsonl')]
  assert [r['step'] for r in records] == sorted({r['step'] for r in records})  # no duplicates


# ------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize('override, message', [
    ('--config.train.no_such_key=1', 'no_such_key'),
    ('--config.objective.name=nope', "unknown objective 'nope'"),
    ('--config.network.name=nope', "nope"),
    ('--config.data.name=nope', "nope"),
    ('--config.teacher.kind=nope', "unknown teacher.kind 'nope'"),
    ('--config.data.batch_size=12', 'not divisible'),
])
def test_bad_config_gives_one_clear_error(tmp_path, override, message):
  code, _, err = run_cli(tmp_path, override, devices=8)
  assert code != 0
  assert message in err, err[-3000:]
  assert 'Traceback' not in err, err[-3000:]


def test_workdir_of_another_config_is_refused_and_left_intact(tmp_path):
  code, _, err = run_cli(tmp_path, '--config.train.num_steps=20')
  assert code == 0, err[-2000:]
  before = _final_params(tmp_path)
  code, _, err = run_cli(tmp_path, '--config.train.num_steps=40', '--config.network.hidden=32')
  assert code == 1
  assert 'different configuration' in err and "['denoiser']['block0']" in err, err[-2000:]
  assert '(64,) in the checkpoint but (32,) in this run' in err, err[-2000:]
  assert checkpoint.Checkpointer(str(tmp_path)).steps() == [20]
  _assert_same(before, _final_params(tmp_path))


def test_corrupt_checkpoint_falls_back_to_the_previous_one(tmp_path):
  code, _, err = run_cli(tmp_path, '--config.train.num_steps=40')
  assert code == 0, err[-2000:]
  latest = tmp_path / 'checkpoints' / '40' / 'state'
  for path in latest.rglob('*'):
    if path.is_file() and path.stat().st_size > 0 and 'metadata' not in path.name:
      path.write_bytes(b'garbage')
  code, _, err = run_cli(tmp_path, '--config.train.num_steps=60')
  assert code == 0, err[-3000:]
  assert 'unreadable' in err
  assert (tmp_path / 'checkpoints_unreadable' / '40').exists()  # set aside, not deleted
  assert checkpoint.Checkpointer(str(tmp_path)).steps()[-1] == 60


def test_no_usable_checkpoint_is_a_clear_error(tmp_path):
  code, _, err = run_cli(tmp_path, '--config.train.num_steps=20')
  assert code == 0, err[-2000:]
  for path in (tmp_path / 'checkpoints').rglob('*'):
    if path.is_file():
      path.write_bytes(b'garbage')
  code, _, err = run_cli(tmp_path, '--config.train.num_steps=40')
  assert code == 1
  assert 'no usable checkpoint' in err, err[-2000:]


def test_non_finite_loss_stops_naming_step_and_network(tmp_path):
  code, _, err = run_cli(tmp_path, '--config.optim.lr=1e30', '--config.optim.grad_clip=0',
                          '--config.optim.warmup_steps=1', '--config.train.checkpoint_every=1000')
  assert code == 1
  assert 'non-finite loss or gradient at step' in err and 'denoiser' in err, err[-2000:]
  assert not (tmp_path / 'checkpoints').exists() or not checkpoint.Checkpointer(
      str(tmp_path)).steps()


def test_sample_mode_writes_npz_and_png(tmp_path):
  code, _, err = run_cli(tmp_path, '--config.train.num_steps=20')
  assert code == 0, err[-2000:]
  code, _, err = run_cli(tmp_path, '--mode=sample', '--config.sample.num_samples=300',
                          '--config.sample.batch_size=128')
  assert code == 0, err[-2000:]
  samples = np.load(tmp_path / 'samples' / 'samples_8step.npz')['samples']
  assert samples.shape == (300, 2) and np.all(np.isfinite(samples))
  assert (tmp_path / 'samples' / 'samples_8step.png').exists()


# ------------------------------------------------------------------------------- evaluation


@pytest.mark.usefixtures('one_device')
def test_training_reaches_the_mixture_and_keeps_the_best_evaluated_state(tmp_path):
  config = tiny_config(num_steps=800)
  config.network.update(hidden=128, depth=3)
  config.data.batch_size = 256
  config.train.update(ema_decay=0.99, log_every=200, checkpoint_every=400)
  config.eval.update(every=400, features='exact', num_samples=4096, batch_size=1024,
                     steps=(18,), teacher_steps=0)
  experiment = experiment_lib.Experiment(config)
  before = evaluate.RunEvaluator(experiment).evaluate(
      step_lib.sampling_params(experiment.initial_state()))['eval/swd_18step']
  train.train_and_evaluate(config, str(tmp_path))
  records = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  assert [r['step'] for r in records] == [200, 400, 600, 800]  # one record per step
  assert all(np.isfinite(r['train/denoiser/loss']) for r in records)
  swd = {r['step']: r['eval/swd_18step'] for r in records if 'eval/swd_18step' in r}
  floor = records[-1]['eval/swd_floor']
  print(f'SWD (Heun, 18 steps) before {before:.3f}, at 400 / 800 steps {swd[400]:.3f} / '
        f'{swd[800]:.3f}, noise floor {floor:.3f}')
  assert swd[800] < 0.3 * before and swd[800] < 3 * floor, (before, swd, floor)
  best_step = min(swd, key=swd.get)
  best = checkpoint.BestCheckpointer(str(tmp_path), 'eval/swd_18step')
  assert best.best() == (best_step, pytest.approx(swd[best_step]))
  best.close()


def test_eval_mode_evaluates_the_newest_checkpoint(tmp_path):
  code, _, err = run_cli(tmp_path, '--config.train.num_steps=20')
  assert code == 0, err[-2000:]
  eval_flags = ['--mode=eval', '--config.eval.features=exact', '--config.eval.num_samples=1024',
                '--config.eval.batch_size=256', '--config.eval.steps=(1,4)']
  code, out, err = run_cli(tmp_path, *eval_flags)
  assert code == 0, err[-2000:]
  result = json.load(open(tmp_path / 'eval' / 'step_0000020.json'))
  assert result['step'] == 20 and 'wrote' in out
  # A 20-step model is far from the mixture: above the sampling noise floor at both k.
  assert result['eval/swd_1step'] > result['eval/swd_floor']
  assert result['eval/swd_4step'] > result['eval/swd_floor']
  code, _, err = run_cli(tmp_path, *eval_flags[:-1], '--config.eval.features=digits')
  assert code == 1 and 'fastgen: error:' in err and 'Traceback' not in err, err[-2000:]


# ------------------------------------------------------------------ FSDP over the 'model' axis


def test_model_axis_splits_params_and_trains_like_replicated(tmp_path):
  def run(model):
    config = tiny_config(num_steps=20)
    config.network.hidden = 128
    config.mesh.model = model
    return train.train_and_evaluate(config, str(tmp_path / f'model{model}'))

  replicated, sharded = run(1), run(4)
  _assert_same(jax.tree.leaves(replicated), jax.tree.leaves(sharded), exact=False)
  total = per_device = 0
  for leaf in jax.tree.leaves(sharded['params']) + jax.tree.leaves(sharded['opt_state']):
    shard = leaf.addressable_shards[0].data
    split = leaf.size >= sharding.MIN_SHARDED_SIZE and any(d % 4 == 0 for d in leaf.shape)
    assert shard.size == (leaf.size // 4 if split else leaf.size), (leaf.shape, shard.shape)
    total, per_device = total + leaf.nbytes, per_device + shard.nbytes
  assert per_device < 0.3 * total, (per_device, total)  # nearly all bytes are in split arrays


def test_model_axis_must_divide_the_devices(tmp_path):
  code, _, err = run_cli(tmp_path, '--config.mesh.model=3', devices=8)
  assert code != 0 and 'mesh.model=3 must be a positive divisor of the 8 devices' in err


def test_cli_keeps_compiled_programs_in_the_fastgen_cache(tmp_path):
  """Without JAX_COMPILATION_CACHE_DIR the CLI caches its programs in $FASTGEN_CACHE/jax, so a
  resumed or repeated run loads them instead of compiling, the small ones too (the checkpoint
  checksums compile in ~0.1 s, under JAX's default 1 s threshold); FASTGEN_COMPILATION_CACHE=0
  opts out."""
  env = {'FASTGEN_CACHE': str(tmp_path / 'cache'), 'JAX_COMPILATION_CACHE_DIR': '',
         'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': None}
  code, _, err = run_cli(tmp_path / 'run', '--config.train.num_steps=20', devices=1,
                         env_extra=env)
  assert code == 0, err[-2000:]
  cached = os.listdir(tmp_path / 'cache' / 'jax')
  assert any(name.startswith('jit_train_step') for name in cached), cached
  assert any(name.startswith('jit__array_checksum') for name in cached), cached
  code, _, err = run_cli(tmp_path / 'off', '--config.train.num_steps=20', devices=1,
                         env_extra={**env, 'FASTGEN_CACHE': str(tmp_path / 'off_cache'),
                                    'FASTGEN_COMPILATION_CACHE': '0'})
  assert code == 0, err[-2000:]
  assert not (tmp_path / 'off_cache' / 'jax').exists()
