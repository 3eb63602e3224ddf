"""Throughput of each rule's training step: images/s, step time, compile time, memory and MFU.

  python experiments/throughput.py                                  # every digits rule config
  python experiments/throughput.py configs/sid_cifar.py --batch_size=64 --dtype=bfloat16

For each config it builds the run's set-up (:class:`fastgen.experiment.Experiment`) with
synthetic batches of the config's data shape (so CIFAR-10 runs without the data set; a
``teacher.kind='checkpoint'`` teacher is replaced by a randomly initialised network of the same
architecture), compiles the trainer's own jitted step (state donation and shardings; on the CPU
one program per update-schedule pattern, as the trainer), and times ``--repeats`` steps after one
warm-up, on all local devices (batch over 'data', state split over ``--model`` devices of the
'model' axis); for a rule with an update schedule make ``--repeats`` a multiple of its period
(DMD2, LADD: 5).
Columns:

* FLOPs per step: model FLOPs of the whole global batch's step, i.e. its matrix products and
  convolutions counted on the jaxpr (``experiments/flop_count.py``; the costliest branch of a
  conditional). Not XLA's cost analysis of the compiled step: on GPUs its convolutions are cuDNN
  custom calls that it counts as zero (a SiD CIFAR-10 step read 1.6 TFLOP there).
* MFU: FLOPs per step / step time / (the device's dense peak for the compute dtype x devices;
  table below, or ``--peak_tflops``); "n/a" where the peak is unknown (CPUs).
* memory: per device, the allocator's peak where it reports one (GPU, TPU), else the compiled
  step's footprint (arguments + outputs + temporaries - donated aliases) from XLA's memory
  analysis.

``--trace_dir`` also traces ``--repeats`` steps with ``jax.profiler`` and prints where the device
time goes (``experiments/profile_summary.py``). The allocator peak is per process: give each
config its own process for a clean memory figure.

Prints a markdown table and writes the rows as JSON (``--out``).
"""

import argparse
import importlib.util
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, 'experiments'))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from fastgen import denoiser as denoiser_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from fastgen import configs, experiment, sharding  # pylint: disable=g-import-not-at-top,wrong-import-position

import flop_count  # pylint: disable=g-import-not-at-top,wrong-import-position
import profile_summary  # pylint: disable=g-import-not-at-top,wrong-import-position

RULES = ('edm', 'sid', 'dmd', 'dmd2', 'cd', 'ct', 'pd', 'reflow', 'instaflow', 'slimflow')
# Dense peak TFLOP/s per device by compute dtype (vendor data sheets; fp32 = non-tensor-core).
PEAK_TFLOPS = {
    'H100': {'bfloat16': 989.4, 'float32': 66.9},
    'H200': {'bfloat16': 989.4, 'float32': 66.9},
    'A100': {'bfloat16': 312.0, 'float32': 19.5},
    'TPU v4': {'bfloat16': 275.0},
    'TPU v5 lite': {'bfloat16': 197.0},
    'TPU v5p': {'bfloat16': 459.0},
    'TPU v6 lite': {'bfloat16': 918.0},
}


def load_config(path: str):
  """A packaged config by name (``configs/sid_cifar.py``, ``sid_cifar``) or a config file."""
  if not os.path.isfile(path):
    return configs.get_config(path)
  spec = importlib.util.spec_from_file_location('config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def peak_tflops(device_kind: str, dtype: str) -> float | None:
  for name, peaks in PEAK_TFLOPS.items():
    if name in device_kind:
      return peaks.get(dtype)
  return None


def _example_shape(network_config) -> tuple[int, ...]:
  if 'img_resolution' in network_config:
    return (network_config.img_resolution,) * 2 + (network_config.in_channels,)
  return (2,)  # the MLP configs are 2-D


class SyntheticData:
  """Endless copies of one random batch of ``shape`` (with a coupling set's ``'noise'``, for
  reflow-type rules and DMD), standing in for the config's data set."""

  def __init__(self, batch_size: int, shape: tuple[int, ...], num_classes: int):
    rng = np.random.default_rng(0)
    self.shape, self.num_classes = shape, num_classes
    self.batch = {'x': rng.uniform(-1, 1, (batch_size,) + shape).astype(np.float32),
                  'noise': rng.normal(size=(batch_size,) + shape).astype(np.float32),
                  'label': rng.integers(0, max(num_classes, 1), batch_size).astype(np.int32)}

  def __next__(self):
    return self.batch

  def get_state(self):
    return {}

  def set_state(self, state):
    del state


def random_teacher(config, shape):
  """A randomly initialised network of the config's architecture: ``(model, params)``."""
  teacher = denoiser_lib.from_config(config.network)
  return teacher, teacher.init(jax.random.key(1), np.zeros((1,) + shape, np.float32),
                               np.zeros((1,), np.int32) if teacher.num_classes else None)


class TrainerStep:
  """The step as the trainer runs it: one compiled program per pattern of
  ``Experiment.trains_at`` (on the CPU, a rule with an update schedule has one per pattern, e.g.
  DMD2's fake-score-only and full steps; else a single program), picked by a host-side step
  counter. ``step(state, *args) -> (state, metrics)``; the state is donated: feed it back in."""

  def __init__(self, run, args, schedule_window: int = 64):
    self.run, self.step_index, self.programs = run, 0, {}
    start = time.time()
    for pattern in dict.fromkeys(run.trains_at(i) for i in range(schedule_window)):
      self.programs[pattern] = run.train_step.lower(*args, pattern).compile()
    self.compile_seconds = time.time() - start

  def __call__(self, state, *args):
    program = self.programs[self.run.trains_at(self.step_index)]
    self.step_index += 1
    return program(state, *args)

  def memory_analysis(self):
    """XLA's memory analysis of the largest program."""
    return max((p.memory_analysis() for p in self.programs.values()),
               key=lambda m: m.temp_size_in_bytes + m.output_size_in_bytes)


def compiled_step(config, batch_size: int):
  """The config's train step on all local devices, compiled for synthetic batches of
  ``batch_size``: ``(step, args, compile_seconds, objective, flops)``, ``step`` a
  :class:`TrainerStep`; ``flops`` those of the traced schedule's program (a skipped update's
  FLOPs counted, as its costliest branch)."""
  shape = _example_shape(config.network)
  config = config.copy_and_resolve_references()
  config.data.batch_size = batch_size
  config.train.skip_nonfinite = False
  teacher = random_teacher(config, shape) if config.teacher.kind == 'checkpoint' else None
  run = experiment.Experiment(config, teacher=teacher, dataset=SyntheticData(
      batch_size, shape, config.network.get('num_classes', 0)))
  batch = sharding.global_batch(next(run.data), run.mesh)
  args = (run.initial_state(), run.teacher_params, batch, run.train_rng)
  step = TrainerStep(run, args)
  return (step, args, step.compile_seconds, run.objective,
          flop_count.model_flops(run.train_step, *args))


def measure(config, batch_size: int, repeats: int, trace_dir: str = '') -> dict:
  """One config's train step on all local devices; the measured figures."""
  step, (state, *args), compile_seconds, objective, flops = compiled_step(config, batch_size)
  state, _ = step(state, *args)
  jax.block_until_ready(state)
  start = time.time()
  for _ in range(repeats):
    state, _ = step(state, *args)
  jax.block_until_ready(state)
  seconds = (time.time() - start) / repeats
  if trace_dir:
    with jax.profiler.trace(trace_dir):
      for _ in range(repeats):
        state, _ = step(state, *args)
      jax.block_until_ready(state)
    profile_summary.print_breakdown(trace_dir, repeats, seconds)
  stats = jax.local_devices()[0].memory_stats()
  if stats and 'peak_bytes_in_use' in stats:
    memory, memory_kind = stats['peak_bytes_in_use'], 'allocator peak'
  else:
    m = step.memory_analysis()
    memory = (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes -
              m.alias_size_in_bytes)
    memory_kind = 'compiled footprint'
  dtype = str(config.network.get('dtype', 'float32'))
  peak = peak_tflops(jax.devices()[0].device_kind, dtype)
  params = sum(x.size for g in objective.groups for x in jax.tree.leaves(state['params'][g]))
  return {'trained_params': int(params), 'batch_size': batch_size, 'dtype': dtype,
          'compile_s': compile_seconds, 'step_s': seconds, 'images_per_s': batch_size / seconds,
          'flops_per_step': flops, 'memory_bytes': int(memory), 'memory_kind': memory_kind,
          'mfu': flops / seconds / (peak * 1e12 * jax.device_count()) if peak else None}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('configs', nargs='*',
                      default=[f'configs/{rule}_digits.py' for rule in RULES])
  parser.add_argument('--batch_size', type=int, default=0, help="0: the config's batch size")
  parser.add_argument('--dtype', default='', help='network compute dtype (e.g. bfloat16)')
  parser.add_argument('--model', type=int, default=0,
                      help="devices of the mesh's 'model' (FSDP) axis (0: the config's)")
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--peak_tflops', type=float, default=0.0,
                      help='device peak for MFU (0: the built-in table)')
  parser.add_argument('--trace_dir', default='',
                      help='also trace --repeats steps there and print where the time goes')
  parser.add_argument('--out', default=os.path.join(REPO, 'experiments', 'results',
                                                    'throughput.json'))
  args = parser.parse_args()
  device = f'{jax.devices()[0].device_kind} x{jax.device_count()}'
  print(f'device: {device}')
  rows = []
  for path in args.configs:
    config = load_config(path)
    if args.dtype:
      config.network.dtype = args.dtype
    if args.model:
      config.mesh.model = args.model
    row = measure(config, args.batch_size or config.data.batch_size, args.repeats,
                  os.path.join(args.trace_dir, os.path.basename(path)) if args.trace_dir else '')
    row['model'] = config.mesh.model
    if args.peak_tflops:
      row['mfu'] = row['flops_per_step'] / row['step_s'] / (args.peak_tflops * 1e12 *
                                                            jax.device_count())
    rows.append({'config': os.path.basename(path), **row})
    print(json.dumps(rows[-1]), flush=True)
  print('\n| config | trained params | batch | dtype | model axis | step | images/s | compile '
        '| GFLOP/step | memory | MFU |\n' + '| --- ' * 11 + '|')
  for r in rows:
    mfu = f'{100 * r["mfu"]:.1f}%' if r['mfu'] is not None else 'n/a'
    print(f'| {r["config"]} | {r["trained_params"]:,} | {r["batch_size"]} | {r["dtype"]} | '
          f'{r["model"]} | {r["step_s"]:.3f} s | {r["images_per_s"]:.0f} | {r["compile_s"]:.0f} s | '
          f'{r["flops_per_step"] / 1e9:.1f} | {r["memory_bytes"] / 2**20:.0f} MiB '
          f'({r["memory_kind"]}) | {mfu} |')
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump({'device': device, 'rows': rows}, f, indent=2)
  print(f'wrote {args.out}')


if __name__ == '__main__':
  main()
