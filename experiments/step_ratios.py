"""The consistency family's training steps side by side on one network: step time, compile time
and compiled memory of each rule as a ratio to consistency distillation's (CD) step.

  python experiments/step_ratios.py --network=gmm2d    # the gmm2d MLP (128 x 3), batch 512
  python experiments/step_ratios.py --network=digits   # the digits U-Net (441 k params), batch 128

Every rule's objective options come from its packaged gmm2d config; network, data shape and batch
come from ``cd_<network>``, so all rules train the same network. A rule with a teacher gets a
randomly initialised teacher of that same architecture (``experiments/throughput.py``; the
closed-form mixture stands in on gmm2d). Steps are compiled first, then timed round-robin:
``--rounds`` rounds of ``--steps`` steps of each rule in turn, so a busy machine slows every rule
alike; the table gives each rule's median step over the rounds and its ratio to CD's.
"""

import argparse
import json
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, 'experiments'))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

from fastgen import configs  # pylint: disable=g-import-not-at-top,wrong-import-position
import throughput  # pylint: disable=g-import-not-at-top,wrong-import-position

RULES = ('cd', 'ct', 'sct', 'scd', 'meanflow', 'ect', 'tcm')
REFERENCE = 'cd'


def rule_config(rule: str, network: str):
  """``rule``'s gmm2d objective on ``cd_<network>``'s network, data and batch."""
  config = configs.get_config(f'cd_{network}')
  own = configs.get_config(f'{rule}_gmm2d')
  config.objective = own.objective
  config.teacher = own.teacher
  config.network.parameterization = own.network.parameterization
  if network != 'gmm2d' and own.teacher.kind != 'none':
    config.teacher.kind = 'checkpoint'  # a random network of the student's architecture
  return config


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--network', default='gmm2d', choices=('gmm2d', 'digits'))
  parser.add_argument('--rules', nargs='*', default=list(RULES))
  parser.add_argument('--rounds', type=int, default=7)
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  compiled, rows = {}, {}
  for rule in args.rules:
    config = rule_config(rule, args.network)
    step, step_args, compile_s, _, _ = throughput.compiled_step(config, config.data.batch_size)
    state, _ = step(*step_args)  # warm-up
    jax.block_until_ready(state)
    memory = step.memory_analysis()
    compiled[rule] = [step, state, step_args[1:]]
    rows[rule] = {'compile_s': compile_s, 'step_s': [], 'memory_bytes': int(
        memory.argument_size_in_bytes + memory.output_size_in_bytes + memory.temp_size_in_bytes
        - memory.alias_size_in_bytes)}
    print(f'{rule}: compiled in {compile_s:.1f} s', flush=True)
  for _ in range(args.rounds):
    for rule, entry in compiled.items():
      step, state, step_args = entry
      start = time.perf_counter()
      for _ in range(args.steps):
        state, _ = step(state, *step_args)
      jax.block_until_ready(state)
      rows[rule]['step_s'].append((time.perf_counter() - start) / args.steps)
      entry[1] = state
  reference = rows[REFERENCE] if REFERENCE in rows else next(iter(rows.values()))
  ref_step = statistics.median(reference['step_s'])
  print(f'\n{args.network} network, batch {configs.get_config(f"cd_{args.network}").data.batch_size}'
        f', {jax.devices()[0].device_kind}; ratios to {REFERENCE}\n'
        '| rule | step (median) | step / CD | compile | compile / CD | memory | memory / CD |\n'
        + '| --- ' * 7 + '|')
  for rule, row in rows.items():
    step_s = statistics.median(row['step_s'])
    row['step_median_s'] = step_s
    print(f'| {rule} | {step_s * 1e3:.1f} ms | {step_s / ref_step:.2f} | {row["compile_s"]:.1f} s | '
          f'{row["compile_s"] / reference["compile_s"]:.2f} | {row["memory_bytes"] / 2**20:.1f} MiB '
          f'| {row["memory_bytes"] / reference["memory_bytes"]:.2f} |')
  out = args.out or os.path.join(REPO, 'experiments', 'results', f'step_ratios_{args.network}.json')
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out, 'w') as f:
    json.dump({'device': jax.devices()[0].device_kind, 'network': args.network, 'rows': rows}, f,
              indent=2)
  print(f'wrote {out}')


if __name__ == '__main__':
  main()
