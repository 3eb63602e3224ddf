"""SlimFlow on digits: a student UNet with half the channels and one block per level (about 1/7
of the edm_digits teacher's parameters) from the digits EDM teacher's ODE couplings (CPU).

  python -m fastgen.main --config=configs/edm_digits.py --workdir=runs/edm_digits   # teacher
  python -m fastgen.main --config=configs/slimflow_digits.py --workdir=runs/slimflow_digits
  # baseline: the same small net regressed in one step onto the couplings from a random init
  python -m fastgen.main --config=configs/slimflow_digits.py:one_step_regression \\
      --workdir=runs/slimflow_digits_baseline

Steps 0-1999: Annealing Reflow of a small 2-flow on 10,240 pairs of the teacher's Heun-18 ODE
(<workdir>/couplings), beta(k) = exp(-k / 500); steps 2000-3999: Flow-Guided Distillation into
one step (fresh 2-flow pairs from 8 Euler steps per step).
"""

import ml_collections

from configs import default, edm_digits, reflow_gmm2d, slimflow_gmm2d


def get_config(variant: str = 'slimflow'):
  config = default.get_config()
  config.data = reflow_gmm2d.couplings_data(dict(name='digits', batch_size=128, split='train'),
                                            batch_size=128, num_pairs=10240, shard_size=1024,
                                            ode_steps=18)
  config.network = ml_collections.ConfigDict(dict(
      name='unet', parameterization='flow', sigma_data=0.5, img_resolution=8, in_channels=1,
      model_channels=8, channel_mult=(1, 2, 2), num_blocks=1, attn_resolutions=(4,),
      dropout=0.0, num_classes=10))
  config.teacher.update(kind='checkpoint', workdir='runs/edm_digits')
  slimflow_gmm2d.set_objective(config, variant, annealing_steps=500,
                               config_name='slimflow_digits')
  config.optim.update(lr=1e-3, warmup_steps=200, grad_clip=1.0)
  config.train.update(num_steps=4000, log_every=100, checkpoint_every=1000, sample_every=1000,
                      ema_decay=0.999)
  config.sample.update(num_steps=1, num_samples=10000, batch_size=1000, grid_size=100)
  config.eval = edm_digits.eval_config(steps=(1, 2, 4), every=1000)
  config.eval.update(straightness_steps=16, straightness_samples=500)
  return config
