"""The step of an update-scheduled rule (DMD, DMD2, LADD) in each form the trainer can build.

  python experiments/scheduled_step.py dmd2 ladd               # where against host, digits
  python experiments/scheduled_step.py dmd --forms cond where  # with the lax.cond form

Forms (``fastgen.step.scheduled_update``): ``cond`` traces the schedule into a ``lax.cond``
(accelerators), ``where`` computes a skipped update and discards it (the traced form on the CPU),
``host`` evaluates the schedule on the host and passes it as the step's static ``trains``, one
program per pattern (the CPU trainer). Each rule's digits config, shortened as the convergence
study's (``experiments/rules_table.py``), with real batches of its data set, on one
``Experiment``: the first ``--steps`` steps of each form (compiles included) are timed once,
then the mean over ``--steps`` steps, forms alternating, ``--repeats`` times; prints min and
median seconds per step. Run from the repository root; needs the digits teacher (runs/edm_digits,
see the README) and uses the study's run directories (``--runs_dir``) for DMD's and LADD's
coupling sets.
"""

import argparse
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from fastgen import experiment as experiment_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from fastgen import sharding, step  # pylint: disable=g-import-not-at-top,wrong-import-position

import rules_table  # pylint: disable=g-import-not-at-top,wrong-import-position


def forms_of(experiment, names):
  """``{name: (jitted step, trains_at)}``."""
  train = experiment.config.train
  make = lambda conditional: jax.jit(step.make_train_step(
      experiment.objective, experiment.optimizer, train.ema_decay, train.skip_nonfinite,
      conditional), static_argnums=4)
  built = {'cond': (make(True), lambda s: None), 'where': (make(False), lambda s: None),
           'host': (make(False), experiment.trains_at)}
  return {name: built[name] for name in names}


def measure(rule: str, names, num_steps: int, repeats: int, runs_dir: str) -> None:
  config, workdir = rules_table.rule_config(rule, 'digits', 1500, (1,), runs_dir)
  experiment = experiment_lib.Experiment(config, workdir)  # reads (or writes) its coupling set
  if not experiment.objective.has_update_schedule:
    raise SystemExit(f'{rule} has no update schedule')
  batches = [sharding.global_batch(next(experiment.data), experiment.mesh)
             for _ in range(num_steps)]
  state = experiment.initial_state()

  def run(form):
    nonlocal state
    train_step, trains_at = form
    first = int(state['step'])  # waits for the state
    start = time.perf_counter()
    for i, batch in enumerate(batches):
      state, _ = train_step(state, experiment.teacher_params, batch, experiment.train_rng,
                            trains_at(first + i))
    jax.block_until_ready(state)
    return time.perf_counter() - start

  forms = forms_of(experiment, names)
  for name, form in forms.items():
    print(f'{rule} {name}: first {num_steps} steps incl. compile {run(form):.1f} s', flush=True)
  seconds = {name: [] for name in forms}
  for _ in range(repeats):
    for name, form in forms.items():
      seconds[name].append(run(form) / num_steps)
  for name, values in seconds.items():
    print(f'{rule} {name}: s/step min {min(values):.3f} median {np.median(values):.3f}')


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('rules', nargs='+')
  parser.add_argument('--forms', nargs='+', default=['where', 'host'],
                      choices=['cond', 'where', 'host'])
  parser.add_argument('--steps', type=int, default=10, help='a multiple of the schedule period')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--runs_dir', default=os.path.join(REPO, 'runs', 'convergence'))
  args = parser.parse_args()
  for rule in args.rules:
    measure(rule, args.forms, args.steps, args.repeats, args.runs_dir)


if __name__ == '__main__':
  main()
