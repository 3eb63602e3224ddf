"""SlimFlow on the closed-form 2-D mixture teacher: a small MLP student, Annealing Reflow then
Flow-Guided Distillation in one run (CPU, about 2 minutes).

  python -m fastgen.main --config=configs/slimflow_gmm2d.py --workdir=runs/slimflow_gmm2d
  # the baseline SlimFlow must beat: the same small net regressed in one step onto the same
  # couplings from a random init, same number of steps
  python -m fastgen.main --config=configs/slimflow_gmm2d.py:one_step_regression \\
      --workdir=runs/slimflow_gmm2d_baseline

Steps 0-1999 train a 2-flow by Annealing Reflow on the teacher's ODE couplings (65,536 pairs,
Heun 64 steps, kept in <workdir>/couplings), beta(k) = exp(-k / 400); steps 2000-3999 distil it
into one step with flow guidance (fresh 2-flow pairs from 8 Euler steps each step). The student
has 2 residual blocks of width 64 (the reflow and InstaFlow gmm2d students: 3 of width 128).
"""

from configs import default, edm_gmm2d, reflow_gmm2d


def set_objective(config, variant: str, annealing_steps: int, config_name: str):
  """SlimFlow's two stages, or the baseline it is compared with: the same small net regressed in
  one step onto the same couplings from a random init ('one_step_regression')."""
  if variant == 'slimflow':
    config.objective.update(name='slimflow', reflow_steps=2000, annealing='exp',
                            annealing_steps=annealing_steps, time_distribution='uniform',
                            premetric='l2', couplings='dataset', two_flow_steps=8,
                            guidance_weight=1.0, guidance_steps=1, init_from_teacher=False)
  elif variant == 'one_step_regression':
    config.objective.update(name='instaflow', premetric='l2', couplings='dataset',
                            init_from_teacher=False)
  else:
    raise ValueError(f'unknown {config_name} variant {variant!r}; known: slimflow, '
                     f'one_step_regression')


def get_config(variant: str = 'slimflow'):
  config = default.get_config()
  config.data = reflow_gmm2d.couplings_data(dict(name='gmm2d', batch_size=512), batch_size=512,
                                            num_pairs=65536, shard_size=8192, ode_steps=64)
  config.network.update(name='mlp', hidden=64, depth=2, parameterization='flow', sigma_data=1.0)
  config.teacher.update(kind='analytic', mixture='gmm2d')
  set_objective(config, variant, annealing_steps=400, config_name='slimflow_gmm2d')
  config.optim.update(lr=1e-3, warmup_steps=100, grad_clip=1.0)
  config.train.update(num_steps=4000, log_every=200, checkpoint_every=1000, sample_every=2000,
                      ema_decay=0.995)
  config.sample.update(num_steps=1, num_samples=10000, batch_size=10000, grid_size=5000)
  config.eval = edm_gmm2d.eval_config(steps=(1, 2, 4), every=1000)
  config.eval.update(straightness_steps=32, straightness_samples=2000)
  return config
