"""Compile time and steady-state time of one training step of a config, on this machine.

  python experiments/step_time.py configs/edm_digits.py configs/edm_cifar.py --batch_size=32

Builds the config's experiment with synthetic batches of its data shape (so CIFAR-10 runs without
the data set), jit-compiles the generic train step, and times ``--repeats`` steps after one
warm-up. Prints one line per config: parameters, batch, compile seconds, seconds per step,
images per second.
"""

import argparse
import importlib.util
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from fastgen import denoiser as denoiser_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from fastgen import objectives, sharding, teachers, train  # pylint: disable=g-import-not-at-top,wrong-import-position


def load_config(path: str):
  spec = importlib.util.spec_from_file_location('config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def time_step(config, batch_size: int, repeats: int) -> dict:
  mesh = sharding.make_mesh()
  jax.set_mesh(mesh)
  net = config.network
  shape = ((net.img_resolution, net.img_resolution, net.in_channels) if 'img_resolution' in net
           else (2,))  # the MLP configs are 2-D
  if config.teacher.kind == 'checkpoint':  # a randomly initialised teacher of the same network
    teacher = denoiser_lib.from_config(config.network)
    teacher_params = teacher.init(jax.random.key(1), np.zeros((1,) + shape, np.float32),
                                  np.zeros((1,), np.int32) if teacher.num_classes else None)
  else:
    teacher, teacher_params = teachers.load_teacher(config.teacher)
  objective = objectives.make_objective(config, teacher)
  optimizer = train.make_optimizer(config.optim)
  rng = np.random.default_rng(0)
  batch = {'x': rng.uniform(-1, 1, (batch_size,) + shape).astype(np.float32),
           'label': rng.integers(0, 10, batch_size).astype(np.int32)}
  batch = sharding.global_batch(batch, mesh)
  state = jax.jit(lambda r: train.init_state(objective, optimizer, r, batch, teacher_params))(
      jax.random.key(0))
  step = jax.jit(train.make_train_step(objective, optimizer, 0.999, False), donate_argnums=0)
  start = time.time()
  compiled = step.lower(state, teacher_params, batch, jax.random.key(2)).compile()
  compile_seconds = time.time() - start
  state, _ = compiled(state, teacher_params, batch, jax.random.key(2))
  jax.block_until_ready(state)
  start = time.time()
  for _ in range(repeats):
    state, _ = compiled(state, teacher_params, batch, jax.random.key(2))
  jax.block_until_ready(state)
  seconds = (time.time() - start) / repeats
  params = sum(x.size for g in objective.groups for x in jax.tree.leaves(state['params'][g]))
  return {'params': params, 'compile_s': compile_seconds, 'step_s': seconds,
          'images_per_s': batch_size / seconds}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('configs', nargs='+')
  parser.add_argument('--batch_size', type=int, default=0, help='0: the config\'s batch size')
  parser.add_argument('--repeats', type=int, default=5)
  args = parser.parse_args()
  print(f'device: {jax.devices()[0].device_kind} x{jax.device_count()}')
  for path in args.configs:
    config = load_config(path)
    batch_size = args.batch_size or config.data.batch_size
    r = time_step(config, batch_size, args.repeats)
    print(f'{os.path.basename(path)}: {r["params"]:,} trained params, batch {batch_size}, '
          f'compile {r["compile_s"]:.1f} s, {r["step_s"]:.3f} s/step, '
          f'{r["images_per_s"]:.0f} images/s', flush=True)


if __name__ == '__main__':
  main()
