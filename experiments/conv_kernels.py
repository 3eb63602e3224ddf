"""One 3x3 convolution's three kernels on the CPU: XLA:CPU (fastgen's flags) against PyTorch.

For each shape of the digits U-Net (8x8, 4x4 and 2x2 maps; batch 128 for a training step, 1024
for the sampler) and of the mc-32 CIFAR-10 U-Net (batch 16), times the forward convolution, the
input gradient and the kernel gradient alone (jitted, one output each), and the same three of
``fastgen.networks.unet.conv_as_matrix`` where a map has no more positions than the kernel has
taps (where fastgen's U-Nets use it on the CPU). With ``--torch_python`` the convolution's
three kernels also run in PyTorch (``conv2d`` and ``aten.convolution_backward``, NCHW,
``torch.set_num_threads``) in its own process. The sides
alternate for ``--rounds`` rounds, one process per side and round; each figure is the median of
``--repeats`` calls, and the table keeps each side's smallest median over the rounds.

    python experiments/conv_kernels.py --torch_python=/tmp/torchvenv/bin/python
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = (  # (batch, height, width, in channels, out channels)
    (128, 8, 8, 16, 16), (128, 4, 4, 32, 32), (128, 2, 2, 32, 32),
    (1024, 8, 8, 16, 16), (1024, 4, 4, 32, 32), (1024, 2, 2, 32, 32),
    (16, 32, 32, 64, 64), (16, 16, 16, 64, 64))


def median_ms(call, repeats: int) -> float:
  call()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    call()
    times.append(time.perf_counter() - start)
  return float(np.median(times) * 1e3)


def jax_side(repeats: int) -> dict:
  sys.path.insert(0, REPO)
  from fastgen.networks import unet  # pylint: disable=import-outside-toplevel: sets XLA's flags
  import jax  # pylint: disable=import-outside-toplevel

  def conv(x, w):
    return jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

  kernels = {
      'forward': conv,
      'input gradient': lambda x, w, dy: jax.vjp(lambda x: conv(x, w), x)[1](dy)[0],
      'kernel gradient': lambda x, w, dy: jax.vjp(lambda w: conv(x, w), w)[1](dy)[0],
      'matrix product: forward': lambda x, w: unet.conv_as_matrix(x, w, 1),
      'matrix product: input gradient': lambda x, w, dy: jax.vjp(
          lambda x: unet.conv_as_matrix(x, w, 1), x)[1](dy)[0],
      'matrix product: kernel gradient': lambda x, w, dy: jax.vjp(
          lambda w: unet.conv_as_matrix(x, w, 1), w)[1](dy)[0],
  }
  rows = {}
  rng = np.random.default_rng(0)
  for n, h, w, c, o in SHAPES:
    x, kernel, dy = (rng.standard_normal(s, np.float32)
                     for s in ((n, h, w, c), (3, 3, c, o), (n, h, w, o)))
    times = {}
    for name, fn in kernels.items():
      if name.startswith('matrix') and h * w > 9:
        continue
      args = (x, kernel) if name.endswith('forward') else (x, kernel, dy)
      compiled = jax.jit(fn).lower(*args).compile()
      times[name] = median_ms(lambda: jax.block_until_ready(compiled(*args)), repeats)
    rows[str((n, h, w, c, o))] = times
  return rows


def torch_side(repeats: int, threads: int) -> dict:
  import torch  # pylint: disable=import-outside-toplevel,import-error
  torch.set_num_threads(threads)
  rows = {}
  for n, h, w, c, o in SHAPES:
    x, kernel, dy = torch.randn(n, c, h, w), torch.randn(o, c, 3, 3), torch.randn(n, o, h, w)

    def backward(mask):
      return lambda: torch.ops.aten.convolution_backward(
          dy, x, kernel, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask)

    with torch.no_grad():
      rows[str((n, h, w, c, o))] = {
          'forward': median_ms(lambda: torch.nn.functional.conv2d(x, kernel, padding=1), repeats),
          'input gradient': median_ms(backward([True, False, False]), repeats),
          'kernel gradient': median_ms(backward([False, True, False]), repeats)}
  return rows


def side(python: str, name: str, args) -> dict:
  command = [python, os.path.abspath(__file__), f'--side={name}', f'--repeats={args.repeats}',
             f'--threads={args.threads}']
  out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
  return json.loads(out.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--torch_python', default='', help='a python with torch (none: JAX only)')
  parser.add_argument('--threads', type=int, default=2, help='torch.set_num_threads')
  parser.add_argument('--repeats', type=int, default=30)
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--side', choices=('jax', 'torch'), help=argparse.SUPPRESS)
  parser.add_argument('--out', default='', help='also write the figures to this JSON file')
  args = parser.parse_args()
  if args.side:
    rows = jax_side(args.repeats) if args.side == 'jax' else torch_side(args.repeats,
                                                                          args.threads)
    print(json.dumps(rows))
    return

  sides = ['jax'] + (['torch'] if args.torch_python else [])
  best = {name: {} for name in sides}
  for _ in range(args.rounds):
    for name in sides:
      rows = side(sys.executable if name == 'jax' else args.torch_python, name, args)
      for shape, times in rows.items():
        for kernel, ms in times.items():
          best[name].setdefault(shape, {})[kernel] = min(
              ms, best[name].get(shape, {}).get(kernel, np.inf))
  kernels = list(dict.fromkeys(k for times in best['jax'].values() for k in times))
  print(f'median ms, smallest of {args.rounds} rounds; XLA:CPU'
        + (f' / PyTorch ({args.threads} threads)' if args.torch_python else ''))
  print('| shape (N, H, W, C, O) | ' + ' | '.join(kernels) + ' |')
  print('| --- ' * (len(kernels) + 1) + '|')
  for shape in map(str, SHAPES):
    cells = []
    for kernel in kernels:
      mine = best['jax'][shape].get(kernel)
      theirs = best.get('torch', {}).get(shape, {}).get(kernel)
      cells.append('' if mine is None else f'{mine:.2f}' + (
          f' / {theirs:.2f}' if theirs is not None else ''))
    print(f'| {shape} | ' + ' | '.join(cells) + ' |')
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(best, f, indent=1)


if __name__ == '__main__':
  main()
