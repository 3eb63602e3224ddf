"""Improved consistency training (iCT) on the 8x8 digits, class-conditional, no teacher (CPU).

  python -m fastgen.main --config=configs/ct_digits.py --workdir=runs/ct_digits

edm_digits' network from a fresh init; Song & Dhariwal 2023's recipe (pseudo-Huber metric,
lognormal noise indices with P_mean = -1.1, P_std = 2.0, discretisation doubling from 10 to 1280
points over ``objective.total_steps`` = train.num_steps, no target EMA, dropout).
Samples: runs/ct_digits/samples/step_*.png (column i = digit i).
"""

from configs import default, edm_digits


def get_config():
  config = default.get_config()
  config.data.update(name='digits', batch_size=128, split='train')
  config.network = edm_digits.network(dropout=0.1)
  config.teacher.update(kind='none')
  config.objective.update(name='ct', total_steps=8000, s0=10, s1=1280, p_mean=-1.1, p_std=2.0)
  config.optim.update(lr=2e-3, warmup_steps=500, grad_clip=1.0)
  config.train.update(num_steps=8000, log_every=200, checkpoint_every=1000, sample_every=2000,
                      ema_decay=0.999)
  config.sample.update(num_steps=1, num_samples=10000, batch_size=1000, grid_size=100)
  config.eval = edm_digits.eval_config(steps=(1, 2, 4), every=1000)
  return config
