"""EDM teacher on the 2-D Gaussian mixture (CPU, about a minute).

  python -m fastgen.main --config=configs/edm_gmm2d.py --workdir=runs/edm_gmm2d
"""

import ml_collections

from configs import default


def eval_config(steps, every: int, teacher_steps: int = 18) -> ml_collections.ConfigDict:
  """Exact metrics against the known gmm2d mixture: data-space Fréchet distance and sliced
  Wasserstein of 10k samples, with their sampling-noise floors."""
  return ml_collections.ConfigDict(dict(
      every=every, features='exact', num_samples=10000, batch_size=10000, steps=tuple(steps),
      teacher_steps=teacher_steps, reference='', reference_num_samples=0, inception_weights='',
      num_projections=512, seed=0))


def get_config():
  config = default.get_config()
  config.data.update(name='gmm2d', batch_size=512)
  config.network.update(name='mlp', hidden=256, depth=4, sigma_data=1.0)
  config.objective.update(name='edm', p_mean=-0.4, p_std=1.4)
  config.optim.update(lr=2e-3, warmup_steps=200)
  config.train.update(num_steps=4000, log_every=200, checkpoint_every=1000, sample_every=2000,
                      ema_decay=0.999)
  config.sample.update(num_steps=18, num_samples=10000, batch_size=10000, grid_size=5000)
  config.eval = eval_config(steps=(18,), every=1000, teacher_steps=0)  # Heun 18 = 35 NFE
  return config
