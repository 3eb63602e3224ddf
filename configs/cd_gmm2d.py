"""Consistency distillation of the closed-form 2-D mixture teacher (CPU, about a minute).

  python -m fastgen.main --config=configs/cd_gmm2d.py --workdir=runs/cd_gmm2d

The teacher is the exact denoiser of the gmm2d distribution, so the student starts from a fresh
init (``init_from_teacher=False``); x0 comes from the gmm2d data set (Song et al. 2023,
Algorithm 2). Heun teacher steps on N = 18 Karras points, squared L2 metric, target EMA
mu = 0.95 (the paper's ImageNet / LSUN value: from a fresh init it reached a 1-step FD of 0.0012
in 3000 steps where mu = 0, stop-gradient(student), stalled at 0.011).
"""

from configs import default, edm_gmm2d


def get_config():
  config = default.get_config()
  config.data.update(name='gmm2d', batch_size=512)
  config.network.update(name='mlp', hidden=128, depth=3, sigma_data=1.0)
  config.teacher.update(kind='analytic', mixture='gmm2d')
  config.objective.update(name='cd', num_scales=18, solver='heun', target_ema=0.95, metric='l2',
                          init_from_teacher=False)
  config.optim.update(lr=1e-3, warmup_steps=100, grad_clip=1.0)
  config.train.update(num_steps=3000, log_every=200, checkpoint_every=1000, sample_every=1000,
                      ema_decay=0.99)
  config.sample.update(num_steps=1, num_samples=10000, batch_size=10000, grid_size=5000)
  config.eval = edm_gmm2d.eval_config(steps=(1, 2, 4), every=1000)
  return config
