"""SiD one-step generator for the closed-form 2-D mixture teacher (CPU, about a minute).

  python -m fastgen.main --config=configs/sid_gmm2d.py --workdir=runs/sid_gmm2d

The teacher is the exact denoiser of the gmm2d distribution, so generator and fake score start
from a fresh init (``init_from_teacher=False``); the data set only sets the batch size. Adam with
beta1 = 0 as in the official SiD code; a larger learning rate than the paper's 1e-5 because the
networks start from scratch.
"""

from configs import default, edm_gmm2d


def get_config():
  config = default.get_config()
  config.data.update(name='gmm2d', batch_size=512)
  config.network.update(name='mlp', hidden=128, depth=3, sigma_data=1.0)
  config.teacher.update(kind='analytic', mixture='gmm2d')
  config.objective.update(name='sid', alpha=1.2, sigma_init=2.5, tmax=800, p_mean=-0.4,
                          p_std=1.4, init_from_teacher=False)
  config.optim.update(lr=1e-4, warmup_steps=100, b1=0.0, b2=0.999, eps=1e-8, grad_clip=1.0)
  config.train.update(num_steps=4000, log_every=200, checkpoint_every=2000, sample_every=2000,
                      ema_decay=0.99)
  config.sample.update(num_steps=1, num_samples=10000, batch_size=10000, grid_size=5000)
  config.eval = edm_gmm2d.eval_config(steps=(1, 2, 4), every=1000)
  return config
