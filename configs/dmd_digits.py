"""DMD one-step generator distilled from the digits EDM teacher (CPU).

  python -m fastgen.main --config=configs/edm_digits.py --workdir=runs/edm_digits   # teacher
  python -m fastgen.main --config=configs/dmd_digits.py --workdir=runs/dmd_digits

DMD (Yin et al. 2024a): distribution matching plus lambda_reg = 0.25 times the regression loss
(squared L2 here, the paper's LPIPS needs a feature network) on the coupling data set: on first
use the trainer solves the teacher's ODE (Heun, 18 steps = 35 evaluations, from sigma_max = 80,
the generator's ``sigma_gen``) for 4096 noises and labels and writes them to
``<workdir>/couplings`` (a few minutes on 2 CPU cores). Generator and fake score start from the
teacher (edm_digits' network); Adam with beta1 = 0 and lr 1e-4 as configs/sid_digits.py, for a
CPU budget of a few thousand steps (the paper: 2e-6 on ImageNet-64). Only smoke-tested.
Samples: runs/dmd_digits/samples/step_*.png (column i = digit i).
"""

import ml_collections

from configs import default, edm_digits


def get_config():
  config = default.get_config()
  config.data = ml_collections.ConfigDict(dict(
      name='couplings', batch_size=128, directory='',
      source=dict(name='digits', batch_size=128, split='train'), num_pairs=4096, shard_size=1024,
      ode_steps=18, ode_method='heun', coupling_seed=0))
  config.network = edm_digits.network(dropout=0.1)
  config.teacher.update(kind='checkpoint', workdir='runs/edm_digits')
  config.objective.update(name='dmd', sigma_gen=80.0, regression_weight=0.25, p_mean=-1.2,
                          p_std=1.2, init_from_teacher=True)
  config.optim.update(lr=1e-4, warmup_steps=0, b1=0.0, b2=0.999, eps=1e-8, grad_clip=10.0)
  config.train.update(num_steps=4000, log_every=200, checkpoint_every=1000, sample_every=1000,
                      ema_decay=0.999)
  config.sample.update(num_steps=1, num_samples=10000, batch_size=1000, grid_size=100)
  config.eval = edm_digits.eval_config(steps=(1, 2, 4), every=1000)
  return config
