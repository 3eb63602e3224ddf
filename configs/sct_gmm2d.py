"""sCT, continuous-time consistency training, on the 2-D mixture data, no teacher (CPU).

  python -m fastgen.main --config=configs/sct_gmm2d.py --workdir=runs/sct_gmm2d

Lu & Song 2024's recipe in TrigFlow: tau ~ N(P_mean, P_std^2) with the paper's CIFAR-10 values
(-1.0, 1.4), tangent normalization c = 0.1, learned adaptive weighting, tangent warm-up (here
over 500 of 3000 steps; the paper: 10k), target theta- = stop-gradient(theta). sigma_d = 1.0 as
the other gmm2d configs (the mixture's per-coordinate scale). 1-step sampling from
t_max = arctan(80 / sigma_d), 2-step through t = 1.1.
"""

from configs import default, edm_gmm2d


def get_config():
  config = default.get_config()
  config.data.update(name='gmm2d', batch_size=512)
  config.network.update(name='mlp', hidden=128, depth=3, sigma_data=1.0)
  config.teacher.update(kind='none')
  config.objective.update(name='sct', p_mean=-1.0, p_std=1.4, warmup_steps=500,
                          normalization=0.1, intermediate_times=(1.1,))
  config.optim.update(lr=1e-3, warmup_steps=100, grad_clip=1.0)
  config.train.update(num_steps=3000, log_every=200, checkpoint_every=1000, sample_every=1000,
                      ema_decay=0.99)
  config.sample.update(num_steps=1, num_samples=10000, batch_size=10000, grid_size=5000)
  config.eval = edm_gmm2d.eval_config(steps=(1, 2), every=1000)
  return config
