"""MeanFlow (Geng et al. 2025, "Mean Flows for One-step Generative Modeling"): no teacher.

  python -m fastgen.main --config=configs/meanflow_gmm2d.py --workdir=runs/meanflow_gmm2d   # CPU

- gmm2d: the 2-D mixture data; (r, t) from logit-normal(-0.4, 1.0) with r != t for 25% of the
  batch, adaptive loss weighting p = 1, c = 1e-3, the network embedding (t, t - r) unscaled.
  1-step sampling z_0 = z_1 - u(z_1, 0, 1); k steps on a uniform grid of t. Not yet at the
  teacher's level on this mixture: 1-step FD 0.009 after 2000 steps
  (tests/objectives/test_meanflow.py).
"""

from fastgen.configs import data_presets

DATA_SETS = ('gmm2d',)


def get_config(arg: str = 'gmm2d'):
  data, _ = data_presets.parse_arg(arg, 'meanflow', DATA_SETS)
  config = data_presets.start(data)
  config.network.parameterization = 'flow'
  config.objective.update(name='meanflow', time_distribution='logit_normal', time_mu=-0.4,
                          time_sigma=1.0, ratio_r_neq_t=0.25, weight_power=1.0, weight_c=1e-3,
                          time_scale=1.0)
  config.optim.update(lr=1e-3, warmup_steps=100, grad_clip=1.0)
  config.train.update(num_steps=3000, ema_decay=0.99)
  return config
