"""DMD one-step generator for the closed-form 2-D mixture teacher (CPU, a few minutes).

  python -m fastgen.main --config=configs/dmd_gmm2d.py --workdir=runs/dmd_gmm2d

DMD (Yin et al. 2024a): distribution matching plus lambda_reg = 0.25 (the paper's weight) times
the regression loss on noise -> teacher-sample pairs. The pairs are the coupling data set
(``data.name='couplings'``, :mod:`fastgen.couplings`): on first use the trainer solves the
teacher's ODE (Heun, ``ode_steps`` steps from sigma_max = 80, the generator's ``sigma_gen``) for
``num_pairs`` noises and writes them to ``<workdir>/couplings``. The teacher is the exact
denoiser of the gmm2d distribution, so generator and fake score start from a fresh init; Adam
with beta1 = 0 as in SiD's and DMD2's code, a larger learning rate than the papers' because the
networks start from scratch.
"""

import ml_collections

from configs import default, edm_gmm2d


def coupling_data(batch_size: int, num_pairs: int = 16384) -> ml_collections.ConfigDict:
  """The gmm2d teacher's ODE pairs (Heun, 32 steps = 63 evaluations), 4 shards."""
  return ml_collections.ConfigDict(dict(
      name='couplings', batch_size=batch_size, directory='',
      source=dict(name='gmm2d', batch_size=batch_size), num_pairs=num_pairs,
      shard_size=num_pairs // 4, ode_steps=32, ode_method='heun', coupling_seed=0))


def get_config():
  config = default.get_config()
  config.data = coupling_data(batch_size=512)
  config.network.update(name='mlp', hidden=128, depth=3, sigma_data=1.0)
  config.teacher.update(kind='analytic', mixture='gmm2d')
  config.objective.update(name='dmd', sigma_gen=80.0, regression_weight=0.25, p_mean=-0.4,
                          p_std=1.4, init_from_teacher=False)
  config.optim.update(lr=1e-4, warmup_steps=100, b1=0.0, b2=0.999, eps=1e-8, grad_clip=1.0)
  config.train.update(num_steps=4000, log_every=200, checkpoint_every=2000, sample_every=2000,
                      ema_decay=0.99)
  config.sample.update(num_steps=1, num_samples=10000, batch_size=10000, grid_size=5000)
  config.eval = edm_gmm2d.eval_config(steps=(1, 2, 4), every=1000)
  return config
