"""Progressive distillation of the digits EDM teacher, 32 -> 1 steps (CPU).

  python -m fastgen.main --config=configs/edm_digits.py --workdir=runs/edm_digits   # teacher
  python -m fastgen.main --config=configs/pd_digits.py --workdir=runs/pd_digits

The student has edm_digits' network and starts from the teacher's EMA params; round 0 distils
the teacher's 32-step DDIM sampler into 16 steps, then 8, 4, 2, 1 (5 rounds of
``steps_per_round``). No EMA and gradient clipping 1, as Salimans & Ho 2022; a larger learning
rate than their 5e-5 to fit a CPU budget. ``sample.num_steps=0`` samples with the current
round's step count. Samples: runs/pd_digits/samples/step_*.png (column i = digit i).
"""

from configs import default, edm_digits


def get_config():
  config = default.get_config()
  config.data.update(name='digits', batch_size=128, split='train')
  config.network = edm_digits.network(dropout=0.0)
  config.teacher.update(kind='checkpoint', workdir='runs/edm_digits')
  config.objective.update(name='pd', initial_steps=16, final_steps=1, steps_per_round=1000,
                          init_from_teacher=True)
  config.optim.update(lr=2e-4, warmup_steps=0, grad_clip=1.0)
  config.train.update(num_steps=5000, log_every=200, checkpoint_every=1000, sample_every=1000,
                      ema_decay=0.0)
  config.sample.update(num_steps=0, num_samples=10000, batch_size=1000, grid_size=100)
  config.eval = edm_digits.eval_config(steps=(1, 2, 4), every=1000)
  return config
