"""Where a step spends its device time, read back from a ``jax.profiler`` trace.

``experiments/throughput.py --trace_dir=DIR`` traces a few steps of each config and prints this
summary (``jax.profiler.ProfileData``): for the first device plane, the busy time per step (sum of
kernel durations on its stream lines) against the wall time per step, the time by category
(convolution, matrix multiply, attention, fused elementwise/reduction, copies/transposes,
collectives) and the top kernels. The raw trace stays in DIR for TensorBoard's profile plugin or
Perfetto. CPU traces have no device plane; this is for accelerators.
"""

import collections
import glob
import os

import jax

CATEGORIES = (  # (category, substrings of an op or kernel name), first match wins
    ('convolution', ('conv', 'cudnn', 'xmma_fprop', 'xmma_dgrad', 'xmma_wgrad', 'implicit')),
    ('attention', ('attention', 'flash', 'fmha', 'softmax')),
    ('matmul', ('dot', 'gemm', 'cublas', 'nvjet', 'matmul', 'wgmma', 'sm90_xmma')),
    ('collective', ('all-reduce', 'all-gather', 'reduce-scatter', 'nccl', 'collective')),
    ('copy/transpose', ('copy', 'transpose', 'memcpy', 'memset', 'bitcast')),
    ('fusion (elementwise/reduce)', ('fusion', 'reduce', 'loop', 'input_')),
)


def category(name: str) -> str:
  lowered = name.lower()
  for label, keys in CATEGORIES:
    if any(k in lowered for k in keys):
      return label
  return 'other'


def device_op_times(trace_dir: str):
  """``(plane name, {op name: total seconds}, busy seconds)`` of the first accelerator plane."""
  paths = sorted(glob.glob(os.path.join(trace_dir, '**', '*.xplane.pb'), recursive=True))
  if not paths:
    raise FileNotFoundError(f'no *.xplane.pb under {trace_dir}')
  data = jax.profiler.ProfileData.from_file(paths[-1])
  planes = [p for p in data.planes if p.name.startswith('/device:')]
  if not planes:
    raise RuntimeError('the trace has no device plane (CPU runs trace host threads only); '
                       f'planes: {[p.name for p in data.planes]}')
  plane = planes[0]
  totals, busy = collections.Counter(), 0.0
  for line in plane.lines:
    # GPU planes have one line per stream plus summary lines ('XLA Ops', 'XLA Modules', ...);
    # count kernels on the stream lines once.
    if not line.name.startswith('Stream'):
      continue
    for event in line.events:
      seconds = event.duration_ns * 1e-9
      totals[event.name] += seconds
      busy += seconds
  return plane.name, totals, busy


def print_breakdown(trace_dir: str, steps: int, wall_seconds: float, top: int = 25) -> None:
  """Per-step device busy time against ``wall_seconds``, then time by category and top ops."""
  plane, totals, busy = device_op_times(trace_dir)
  busy /= steps
  print(f'profile on {plane}: wall {wall_seconds * 1e3:.1f} ms/step, device busy '
        f'{busy * 1e3:.1f} ms/step ({100 * busy / wall_seconds:.0f}%)')
  by_category = collections.Counter()
  for name, seconds in totals.items():
    by_category[category(name)] += seconds / steps
  print('\n| category | ms/step | share of busy |\n| --- | --- | --- |')
  for label, seconds in by_category.most_common():
    print(f'| {label} | {seconds * 1e3:.2f} | {100 * seconds / busy:.1f}% |')
  print(f'\n| top ops (of {len(totals)}) | category | ms/step | share |\n| --- | --- | --- | --- |')
  for name, seconds in totals.most_common(top):
    short = name if len(name) < 90 else name[:87] + '...'
    print(f'| `{short}` | {category(name)} | {seconds / steps * 1e3:.2f} | '
          f'{100 * seconds / steps / busy:.1f}% |')
