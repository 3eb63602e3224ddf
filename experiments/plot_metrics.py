"""Plot a run's evaluation metrics against training step and wall-clock time.

  python experiments/plot_metrics.py runs/sid_digits

Reads ``WORKDIR/metrics.jsonl`` (one JSON object per line: ``step``, ``wall_time`` in seconds,
metric keys) and, for each metric family among ``eval/fid_*``, ``eval/fd_*`` and ``eval/swd_*``
present, writes ``WORKDIR/<family>_vs_step.png`` and ``WORKDIR/<family>_vs_wallclock.png``: one
line per ``<family>_{k}step`` key, ``_teacher`` and ``_floor`` values as dashed horizontal lines
(log-scale y). Non-finite values (logged as strings) are skipped.
"""

import collections
import json
import math
import os
import re
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

FAMILIES = ('fid', 'fd', 'swd')
_KEY = re.compile(r'^eval/(fid|fd|swd)_(\d+step|teacher|floor)$')


def read_series(path: str) -> dict:
  """``{family: {suffix: [(step, wall_time or None, value)]}}`` of the finite eval values."""
  series = collections.defaultdict(lambda: collections.defaultdict(list))
  with open(path) as f:
    for line in f:
      if not line.strip():
        continue
      record = json.loads(line)
      for key, value in record.items():
        match = _KEY.match(key)
        if match and isinstance(value, (int, float)) and math.isfinite(value):
          series[match[1]][match[2]].append((record['step'], record.get('wall_time'), value))
  return series


def _plot(curves: dict, x_index: int, xlabel: str, family: str, out: str) -> None:
  fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
  steps = sorted((s for s in curves if s.endswith('step')), key=lambda s: int(s[:-4]))
  for suffix in steps:
    points = [(p[x_index], p[2]) for p in curves[suffix] if p[x_index] is not None]
    if points:
      xs, ys = zip(*sorted(points))
      ax.plot(xs, ys, marker='o', markersize=3, label=f'{suffix[:-4]}-step student')
  for suffix, style in (('teacher', '--'), ('floor', ':')):
    if suffix in curves:
      value = curves[suffix][-1][2]
      ax.axhline(value, color='gray' if suffix == 'floor' else 'black', linestyle=style,
                 label=f'{"noise floor" if suffix == "floor" else "teacher"} ({value:.3g})')
  ax.set_yscale('log', nonpositive='clip')
  ax.set_xlabel(xlabel)
  ax.set_ylabel(family.upper())
  ax.grid(True, which='both', alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(out)
  plt.close(fig)


def plot_workdir(workdir: str) -> list[str]:
  """Write the PNGs for ``workdir``; returns their paths."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} not found: is {workdir} a fastgen workdir?')
  series = read_series(path)
  if not series:
    raise ValueError(f'{path} has no eval/fid_*, eval/fd_* or eval/swd_* values yet')
  written = []
  for family in FAMILIES:
    if family not in series:
      continue
    for x_index, xlabel, name in ((0, 'training step', 'step'),
                                  (1, 'wall-clock time (s)', 'wallclock')):
      out = os.path.join(workdir, f'{family}_vs_{name}.png')
      _plot(series[family], x_index, xlabel, family, out)
      written.append(out)
  return written


if __name__ == '__main__':
  if len(sys.argv) != 2:
    sys.exit(f'usage: python {sys.argv[0]} WORKDIR')
  try:
    for png in plot_workdir(sys.argv[1]):
      print(png)
  except (FileNotFoundError, ValueError) as e:
    sys.exit(f'plot_metrics: error: {e}')
