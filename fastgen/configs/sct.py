"""sCT, continuous-time consistency training (Lu & Song 2024, "Simplifying, Stabilizing and
Scaling Continuous-Time Consistency Models"), in TrigFlow: no teacher.

  python -m fastgen.main --config=configs/sct_gmm2d.py --workdir=runs/sct_gmm2d   # CPU

- gmm2d: the 2-D mixture data; tau ~ N(P_mean, P_std^2) with the paper's CIFAR-10 values
  (-1.0, 1.4), tangent normalization c = 0.1, learned adaptive weighting, tangent warm-up (here
  over 500 of 3000 steps; the paper: 10k), target theta- = stop-gradient(theta). sigma_d = 1.0 as
  the other gmm2d configs (the mixture's per-coordinate scale). 1-step sampling from
  t_max = arctan(80 / sigma_d), 2-step through t = 1.1.
"""

from fastgen.configs import data_presets

DATA_SETS = ('gmm2d',)


def get_config(arg: str = 'gmm2d'):
  data, _ = data_presets.parse_arg(arg, 'sct', DATA_SETS)
  config = data_presets.start(data)
  config.objective.update(name='sct', p_mean=-1.0, p_std=1.4, warmup_steps=500,
                          normalization=0.1, intermediate_times=(1.1,))
  config.optim.update(lr=1e-3, warmup_steps=100, grad_clip=1.0)
  config.train.update(num_steps=3000, ema_decay=0.99)
  config.eval.steps = (1, 2)
  return config
