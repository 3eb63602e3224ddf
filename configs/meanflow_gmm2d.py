"""MeanFlow on the 2-D mixture data, no teacher (CPU).

  python -m fastgen.main --config=configs/meanflow_gmm2d.py --workdir=runs/meanflow_gmm2d

Geng et al. 2025's recipe: (r, t) from logit-normal(-0.4, 1.0) with r != t for 25% of the batch,
adaptive loss weighting p = 1, c = 1e-3, the network embedding (t, t - r) unscaled. 1-step
sampling z_0 = z_1 - u(z_1, 0, 1); k steps on a uniform grid of t. Not yet at the teacher's level
on this mixture: 1-step FD 0.009 after 2000 steps (see tests/objectives/test_meanflow.py).
"""

from configs import default, edm_gmm2d


def get_config():
  config = default.get_config()
  config.data.update(name='gmm2d', batch_size=512)
  config.network.update(name='mlp', hidden=128, depth=3, parameterization='flow')
  config.teacher.update(kind='none')
  config.objective.update(name='meanflow', time_distribution='logit_normal', time_mu=-0.4,
                          time_sigma=1.0, ratio_r_neq_t=0.25, weight_power=1.0, weight_c=1e-3,
                          time_scale=1.0)
  config.optim.update(lr=1e-3, warmup_steps=100, grad_clip=1.0)
  config.train.update(num_steps=3000, log_every=200, checkpoint_every=1000, sample_every=1000,
                      ema_decay=0.99)
  config.sample.update(num_steps=1, num_samples=10000, batch_size=10000, grid_size=5000)
  config.eval = edm_gmm2d.eval_config(steps=(1, 2, 4), every=1000)
  return config
