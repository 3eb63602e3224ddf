"""fastgen's jitted steps against the official EDM PyTorch code, same CPU, network and weights.

  python3 -m venv /tmp/torchvenv
  /tmp/torchvenv/bin/pip install torch==2.13.0 numpy requests click tqdm Pillow
  git clone https://github.com/NVlabs/edm /tmp/edm
  python experiments/pytorch_side_by_side.py --edm_dir=/tmp/edm \\
      --torch_python=/tmp/torchvenv/bin/python --repeats=10

Rows (``--rows``): ``edm_digits`` (EDM training step, the digits UNet, batch 128),
``edm_cifar_mc32`` (EDM training step, the CIFAR-10 DDPM++ SongUNet with ``model_channels=32``,
batch 16), ``sid_digits`` (SiD's iteration, fake-score update then generator update, digits UNet,
batch 128, teacher = generator = fake score = the shared weights) and ``heun_digits`` (Heun, 18
steps = 35 NFE, 1024 digits samples in one batch).

For each row two worker processes run side by side: the PyTorch side
(``experiments/pytorch_side_by_side_torch.py`` under ``--torch_python``, importing EDM's
``training.networks``, ``training.loss`` and ``generate`` from ``--edm_dir``; eager, fp32,
``--threads`` threads) and the fastgen side (this file with ``--fastgen_worker``; the trainer's
jitted step built by :class:`fastgen.experiment.Experiment` on synthetic batches, or the jitted
sampler of the ``edm`` objective). The PyTorch side builds ``EDMPrecond`` + ``SongUNet`` with
the arguments fastgen's network config exports to (``fastgen.teachers.edm_import.edm_kwargs``)
and writes its weights; the fastgen side imports them (``params_from_edm``) and checks that both
networks give the same output on one input (max abs difference below ``--tolerance``) before
anything is timed. Then each side runs one warm-up step and ``--repeats`` timed ones
(``--sample_repeats`` for the sampler), the sides
taking turns (order swapped every repeat), so both see the same load. ``--variant NAME=ENV``
adds further fastgen sides with extra environment variables (e.g.
``rbg=JAX_DEFAULT_PRNG_IMPL=rbg``; several ``;``-separated) to measure CPU levers the same way.

Reported per side: min and median step time, fastgen's compile time (lower + compile), the
first (warm-up) step, and the process's peak RSS (each side is its own process, one per row).
ratio = PyTorch median / fastgen median (above 1: fastgen is faster). Writes JSON to ``--out``
and the table into docs/performance.md (``--doc``, a section between markers, replaced on rerun).
"""

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, 'experiments'))

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

ROWS = {
    'edm_digits': dict(task='edm_step', config='edm_digits', overrides={}, batch_size=128,
                       label='EDM step, digits UNet, batch 128'),
    'edm_cifar_mc32': dict(task='edm_step', config='edm_cifar',
                           overrides={'model_channels': 32}, batch_size=16,
                           label='EDM step, 32x32x3 SongUNet (mc 32), batch 16'),
    'sid_digits': dict(task='sid_iteration', config='sid_digits', overrides={}, batch_size=128,
                       label='SiD iteration (fake score + generator), digits UNet, batch 128'),
    'heun_digits': dict(task='heun', config='edm_digits', overrides={}, batch_size=1024,
                        num_steps=18, label='Heun 18 steps (35 NFE), 1024 digits samples'),
}
DOC_BEGIN = '<!-- pytorch_side_by_side: begin -->'
DOC_END = '<!-- pytorch_side_by_side: end -->'


def fastgen_config(row: dict):
  from fastgen import configs  # pylint: disable=import-outside-toplevel
  config = configs.get_config(row['config'])
  config.network.update(row['overrides'])
  config.data.batch_size = row['batch_size']
  config.train.skip_nonfinite = False
  return config


# ------------------------------------------------------------------------------ fastgen side


def fastgen_worker(row_path: str, directory: str) -> None:
  """Serves the driver as the PyTorch side does (see pytorch_side_by_side_torch.py)."""
  protocol = os.fdopen(os.dup(1), 'w')
  os.dup2(2, 1)
  import jax  # pylint: disable=import-outside-toplevel
  import throughput  # pylint: disable=import-outside-toplevel
  from fastgen import denoiser as denoiser_lib, experiment, sharding, step  # pylint: disable=import-outside-toplevel
  from fastgen.teachers import edm_import  # pylint: disable=import-outside-toplevel

  with open(row_path) as f:
    row = json.load(f)
  config = fastgen_config(row)
  network_config = config.network.to_dict()
  with np.load(os.path.join(directory, 'weights.npz')) as weights:
    params, _ = edm_import.params_from_edm(dict(weights), network_config)
  check, expected = (np.load(os.path.join(directory, name))
                     for name in ('check_input.npz', 'check.npz'))
  out = denoiser_lib.from_config(config.network)(params, check['x'], check['sigma'],
                                                 check['label'])
  diff = float(np.max(np.abs(np.asarray(out) - expected['out'])))

  shape = (config.network.img_resolution,) * 2 + (config.network.in_channels,)
  # SiD's teacher, generator and fake score all start from the imported network.
  teacher = ((denoiser_lib.from_config(config.network), params)
             if row['task'] == 'sid_iteration' else None)
  run = experiment.Experiment(config, teacher=teacher, dataset=throughput.SyntheticData(
      row['batch_size'], shape, config.network.num_classes))
  if row['task'] != 'heun':
    state = (run.initial_state() if teacher else jax.device_put(step.state_from_params(
        {'denoiser': params}, run.objective.groups, run.optimizer), run.state_shardings))
    args = (run.teacher_params, sharding.global_batch(next(run.data), run.mesh), run.train_rng)
    start = time.perf_counter()
    compiled = run.train_step.lower(state, *args).compile()
    compile_s = time.perf_counter() - start

    def run_once():
      nonlocal state
      state, _ = compiled(state, *args)
      jax.block_until_ready(state)
  else:
    sample = jax.jit(run.objective.sample, static_argnames=('shape', 'num_steps'))
    args = ({'denoiser': params}, run.teacher_params, run.sample_rng,
            run.sample_labels(row['batch_size']))
    kwargs = dict(shape=(row['batch_size'],) + tuple(shape), num_steps=row['num_steps'])
    start = time.perf_counter()
    compiled = sample.lower(*args, **kwargs).compile()
    compile_s = time.perf_counter() - start

    def run_once():
      jax.block_until_ready(compiled(*args))

  print(json.dumps({'ready': True, 'max_abs_diff': diff, 'compile_s': compile_s,
                    'params': int(sum(x.size for x in jax.tree.leaves(params))),
                    'prng_impl': str(jax.config.jax_default_prng_impl)}),
        file=protocol, flush=True)
  serve(run_once, protocol)


def serve(run_once, protocol) -> None:
  """Answers the driver on ``protocol``: ``step`` -> ``{"seconds": ...}`` of one ``run_once()``;
  anything else -> ``{"peak_rss_mib": ...}`` of this process, and returns."""
  for line in sys.stdin:
    if line.strip() == 'step':
      start = time.perf_counter()
      run_once()
      print(json.dumps({'seconds': time.perf_counter() - start}), file=protocol, flush=True)
    else:
      rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
      print(json.dumps({'peak_rss_mib': rss}), file=protocol, flush=True)
      return


# ---------------------------------------------------------------------------------- driver


class Side:
  """A worker process answering ``step`` / ``exit`` with one JSON line each."""

  def __init__(self, name: str, command: list[str], env: dict[str, str]):
    self.name, self.times = name, []
    self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    env={**os.environ, **env}, text=True)
    self.ready = self.receive()

  def receive(self) -> dict:
    line = self.process.stdout.readline()
    if not line:
      raise RuntimeError(f'the {self.name} side exited (status {self.process.wait()})')
    return json.loads(line)

  def step(self) -> float:
    self.process.stdin.write('step\n')
    self.process.stdin.flush()
    return self.receive()['seconds']

  def finish(self) -> float:
    self.process.stdin.write('exit\n')
    self.process.stdin.flush()
    rss = self.receive()['peak_rss_mib']
    self.process.wait()
    return rss


def run_row(name: str, args, variants: dict[str, dict[str, str]]) -> dict:
  from fastgen.teachers import edm_import  # pylint: disable=import-outside-toplevel
  row = dict(ROWS[name], name=name, threads=args.threads, seed=0)
  config = fastgen_config(row)
  row.update(edm_kwargs=edm_import.edm_kwargs(config.network.to_dict()),
             objective=config.objective.to_dict(), optim=config.optim.to_dict(),
             ema_decay=config.train.ema_decay)
  with tempfile.TemporaryDirectory() as directory:
    row_path = os.path.join(directory, 'row.json')
    with open(row_path, 'w') as f:
      json.dump(row, f)
    rng = np.random.default_rng(1)
    res, channels = config.network.img_resolution, config.network.in_channels
    np.savez(os.path.join(directory, 'check_input.npz'),
             x=rng.normal(size=(4, res, res, channels)).astype(np.float32),
             sigma=np.array([0.02, 0.5, 3.0, 40.0], np.float32),
             label=np.arange(4, dtype=np.int32) % config.network.num_classes)
    here = os.path.dirname(os.path.abspath(__file__))
    sides = [Side('pytorch', [args.torch_python, os.path.join(here, 'pytorch_side_by_side_torch.py'),
                              f'--edm_dir={args.edm_dir}', f'--row={row_path}',
                              f'--dir={directory}'], {})]
    for side_name, env in {'fastgen': {}, **variants}.items():
      sides.append(Side(side_name, [sys.executable, os.path.abspath(__file__), '--fastgen_worker',
                                    f'--row={row_path}', f'--dir={directory}'], env))
      diff = sides[-1].ready['max_abs_diff']
      print(f'{name}: {side_name} vs PyTorch output max abs difference {diff:.2e}', flush=True)
      if not diff <= args.tolerance:
        raise SystemExit(f'{name}: the networks differ ({diff:.2e} > {args.tolerance}); '
                         f'nothing timed')
    first = {s.name: s.step() for s in sides}
    repeats = args.sample_repeats if row['task'] == 'heun' else args.repeats
    for repeat in range(repeats):
      for side in sides if repeat % 2 == 0 else sides[::-1]:
        side.times.append(side.step())
    result = {'row': name, 'label': row['label'], 'batch_size': row['batch_size'],
              'params': sides[1].ready['params'], 'max_abs_diff': sides[1].ready['max_abs_diff'],
              'sides': {}}
    for side in sides:
      result['sides'][side.name] = {
          'min_s': min(side.times), 'median_s': float(np.median(side.times)),
          'times_s': side.times, 'first_step_s': first[side.name],
          'compile_s': side.ready.get('compile_s'), 'peak_rss_mib': side.finish(),
          'prng_impl': side.ready.get('prng_impl'), 'env': variants.get(side.name, {})}
    print(json.dumps(result), flush=True)
    return result


def load_average() -> str:
  return ' '.join(f'{x:.2f}' for x in os.getloadavg())


def table(results: list[dict], variants) -> str:
  lines = ['| task | params | fastgen median (min) | PyTorch median (min) | ratio PyTorch / fastgen '
           '| fastgen compile | peak RSS fastgen / PyTorch |', '| --- ' * 7 + '|']
  for r in results:
    f, p = r['sides']['fastgen'], r['sides']['pytorch']
    lines.append(f'| {r["label"]} | {r["params"]:,} | {f["median_s"]:.3f} s ({f["min_s"]:.3f}) | '
                 f'{p["median_s"]:.3f} s ({p["min_s"]:.3f}) | '
                 f'{p["median_s"] / f["median_s"]:.2f} | {f["compile_s"]:.1f} s | '
                 f'{f["peak_rss_mib"]:.0f} / {p["peak_rss_mib"]:.0f} MiB |')
  if variants:
    lines += ['', '| task | fastgen variant | median (min) | ratio fastgen / variant |',
              '| --- ' * 4 + '|']
    for r in results:
      base = r['sides']['fastgen']['median_s']
      for name in variants:
        v = r['sides'][name]
        lines.append(f'| {r["label"]} | {name} (`{v["prng_impl"]}`, '
                     f'{" ".join(f"{k}={x}" for k, x in v["env"].items())}) | '
                     f'{v["median_s"]:.3f} s ({v["min_s"]:.3f}) | {base / v["median_s"]:.2f} |')
  return '\n'.join(lines)


def write_doc(path: str, section: str) -> None:
  with open(path) as f:
    text = f.read()
  block = f'{DOC_BEGIN}\n{section}\n{DOC_END}'
  if DOC_BEGIN in text:
    text = text[:text.index(DOC_BEGIN)] + block + text[text.index(DOC_END) + len(DOC_END):]
  else:
    text = text.rstrip('\n') + '\n\n' + block + '\n'
  with open(path, 'w') as f:
    f.write(text)


def parse_variants(specs: list[str]) -> dict[str, dict[str, str]]:
  variants = {}
  for spec in specs:
    name, _, assignments = spec.partition('=')
    variants[name] = dict(a.split('=', 1) for a in assignments.split(';'))
  return variants


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--edm_dir', help='a clone of github.com/NVlabs/edm')
  parser.add_argument('--torch_python', default='python',
                      help='the python of a venv with torch (and numpy, requests, click, tqdm, '
                      'Pillow, which EDM imports)')
  parser.add_argument('--rows', nargs='+', default=list(ROWS), choices=list(ROWS))
  parser.add_argument('--repeats', type=int, default=10, help='timed training steps per side')
  parser.add_argument('--sample_repeats', type=int, default=5, help='timed sampler runs per side')
  parser.add_argument('--threads', type=int, default=2, help='torch.set_num_threads')
  parser.add_argument('--tolerance', type=float, default=1e-4,
                      help='largest max abs difference of the two networks outputs')
  parser.add_argument('--variant', action='append', default=[],
                      help='NAME=VAR=VALUE[;VAR=VALUE]: a further fastgen side with that env')
  parser.add_argument('--out', default=os.path.join(REPO, 'experiments', 'results',
                                                    'pytorch_side_by_side.json'))
  parser.add_argument('--doc', default=os.path.join(REPO, 'docs', 'performance.md'),
                      help="markdown file to write the table into ('' for none)")
  parser.add_argument('--fastgen_worker', action='store_true', help=argparse.SUPPRESS)
  parser.add_argument('--row', help=argparse.SUPPRESS)
  parser.add_argument('--dir', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.fastgen_worker:
    fastgen_worker(args.row, args.dir)
    return
  if not args.edm_dir:
    parser.error('--edm_dir (a clone of github.com/NVlabs/edm) is required')
  variants = parse_variants(args.variant)
  command = 'python ' + ' '.join(shlex.quote(a) for a in sys.argv)
  torch_version = subprocess.run([args.torch_python, '-c', 'import torch; print(torch.__version__)'],
                                 capture_output=True, text=True, check=True).stdout.strip()
  import jax  # pylint: disable=import-outside-toplevel
  load_before = load_average()
  results = [run_row(name, args, variants) for name in args.rows]
  meta = {'command': command, 'cpu': platform.processor() or platform.machine(),
          'cpus': os.cpu_count(), 'jax': jax.__version__, 'torch': torch_version,
          'threads': args.threads, 'repeats': args.repeats,
          'sample_repeats': args.sample_repeats,
          'load_average_before': load_before, 'load_average_after': load_average(),
          'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump({**meta, 'rows': results}, f, indent=2)
  text = table(results, variants)
  print(text)
  if args.doc:
    write_doc(args.doc, SECTION.format(table=text, **meta))
  print(f'wrote {args.out}' + (f' and {args.doc}' if args.doc else ''))


SECTION = """## Side by side with the official EDM PyTorch code (CPU, fp32)

`experiments/pytorch_side_by_side.py` runs EDM's own code (a clone of
[NVlabs/edm](https://github.com/NVlabs/edm): `EDMPrecond` + `SongUNet`, `EDMLoss`,
`generate.edm_sampler`; eager PyTorch {torch}, `torch.set_num_threads({threads})`) and fastgen's
jitted steps (JAX {jax}) on the same CPU with identical weights: the PyTorch side writes its state
dict, the fastgen side imports it with `fastgen.teachers.edm_import` and checks both networks'
outputs agree before timing. The sides take turns, {repeats} timed repeats each ({sample_repeats}
for the sampler) after a warm-up; ratio = PyTorch median / fastgen median (above 1: fastgen is
faster). Peak RSS of each side's own process (fastgen's includes compilation). PyTorch needs its
own venv:

```bash
python3 -m venv /tmp/torchvenv
/tmp/torchvenv/bin/pip install torch==2.13.0 numpy requests click tqdm Pillow
git clone https://github.com/NVlabs/edm /tmp/edm
{command}
```

Measured {date} on {cpus} CPU cores ({cpu}) shared with other jobs: load average {load_average_before}
before, {load_average_after} after (1, 5, 15 min). Rows in `experiments/results/pytorch_side_by_side.json`.

{table}
"""


if __name__ == '__main__':
  main()
