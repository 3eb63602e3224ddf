"""Improved consistency training (iCT) on the 2-D mixture data, no teacher (CPU, about a minute).

  python -m fastgen.main --config=configs/ct_gmm2d.py --workdir=runs/ct_gmm2d

Song & Dhariwal 2023's recipe: pseudo-Huber metric, lognormal noise-index sampling
(P_mean = -1.1, P_std = 2.0), discretisation doubling from s0 = 10 to s1 = 1280 points over
``objective.total_steps`` (keep it equal to train.num_steps), target = stop-gradient(student).
"""

from configs import default, edm_gmm2d


def get_config():
  config = default.get_config()
  config.data.update(name='gmm2d', batch_size=512)
  config.network.update(name='mlp', hidden=128, depth=3, sigma_data=1.0)
  config.teacher.update(kind='none')
  config.objective.update(name='ct', total_steps=3000, s0=10, s1=1280, p_mean=-1.1, p_std=2.0)
  config.optim.update(lr=1e-3, warmup_steps=100, grad_clip=1.0)
  config.train.update(num_steps=3000, log_every=200, checkpoint_every=1000, sample_every=1000,
                      ema_decay=0.99)
  config.sample.update(num_steps=1, num_samples=10000, batch_size=10000, grid_size=5000)
  config.eval = edm_gmm2d.eval_config(steps=(1, 2, 4), every=1000)
  return config
