"""Consistency distillation of the digits EDM teacher (CPU).

  python -m fastgen.main --config=configs/edm_digits.py --workdir=runs/edm_digits   # teacher
  python -m fastgen.main --config=configs/cd_digits.py --workdir=runs/cd_digits

The student has edm_digits' network and starts from the teacher's EMA params (Song et al. 2023,
Table 3 settings otherwise: N = 18 Karras points, Heun teacher steps, target mu = 0, i.e.
stop-gradient(student)); squared L2 metric in place of LPIPS. Learning rate below the paper's
4e-4 for the smaller batch. Samples: runs/cd_digits/samples/step_*.png (column i = digit i).
"""

from configs import default, edm_digits


def get_config():
  config = default.get_config()
  config.data.update(name='digits', batch_size=128, split='train')
  config.network = edm_digits.network(dropout=0.0)
  config.teacher.update(kind='checkpoint', workdir='runs/edm_digits')
  config.objective.update(name='cd', num_scales=18, solver='heun', target_ema=0.0, metric='l2',
                          init_from_teacher=True)
  config.optim.update(lr=1e-4, warmup_steps=200, grad_clip=1.0)
  config.train.update(num_steps=4000, log_every=200, checkpoint_every=1000, sample_every=1000,
                      ema_decay=0.999)
  config.sample.update(num_steps=1, num_samples=10000, batch_size=1000, grid_size=100)
  config.eval = edm_digits.eval_config(steps=(1, 2, 4), every=1000)
  return config
