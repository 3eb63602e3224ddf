"""Consistency distillation (Song et al. 2023, "Consistency Models", Algorithm 2).

  python -m fastgen.main --config=configs/cd_gmm2d.py --workdir=runs/cd_gmm2d   # CPU, ~1 min
  python -m fastgen.main --config=configs/edm_digits.py --workdir=runs/edm_digits   # teacher
  python -m fastgen.main --config=configs/cd_digits.py --workdir=runs/cd_digits
  python -m fastgen.main --config=configs/cd_cifar.py --workdir=runs/cd_cifar \\
      --config.teacher.workdir=/path/to/edm_cifar_run \\
      --config.data.data_dir=/path/to/tensorflow_datasets

Everywhere: Heun teacher steps on N = 18 Karras points and the squared L2 metric (the paper's
CD-L2 rows; LPIPS is not available); x0 comes from the data set.

- gmm2d: the teacher is the exact denoiser of the gmm2d distribution, so the student starts from
  a fresh init (``init_from_teacher=False``); target EMA mu = 0.95 (the paper's ImageNet / LSUN
  value: from a fresh init it reached a 1-step FD of 0.0012 in 3000 steps where mu = 0,
  stop-gradient(student), stalled at 0.011).
- digits: the student has edm_digits' network and starts from the teacher's EMA params (the
  paper's Table 3 settings otherwise: target mu = 0, i.e. stop-gradient(student)); learning rate
  below the paper's 4e-4 for the smaller batch. Samples: runs/cd_digits/samples/step_*.png
  (column i = digit i).
- cifar: from the EDM DDPM++ teacher, accelerator scale. ``teacher.workdir`` is a fastgen
  workdir of configs/edm_cifar.py (or a converted EDM checkpoint); the student has its network
  (dropout 0) and starts from its EMA params. The paper's Table 3, CIFAR-10 CD column (and the
  official configs/cifar10_ve_cd.py): N = 18, Heun, mu = 0, batch 512, lr 4e-4 warmed up over
  10 Mimg, no gradient clipping, EMA 0.9999, 800k iterations, dropout 0. Differences: squared
  L2, Adam instead of RAdam, the class-conditional DDPM++ teacher of configs/edm_cifar.py
  instead of the unconditional NCSN++ EDM model.
"""

from fastgen.configs import data_presets

DATA_SETS = ('gmm2d', 'digits', 'cifar')


def get_config(arg: str = 'gmm2d'):
  data, _ = data_presets.parse_arg(arg, 'cd', DATA_SETS)
  config = data_presets.start(data)
  config.teacher.update(data_presets.EDM_TEACHERS[data])
  config.objective.update(name='cd', num_scales=18, solver='heun', target_ema=0.0, metric='l2',
                          init_from_teacher=True)
  if data == 'gmm2d':
    config.objective.update(target_ema=0.95, init_from_teacher=False)
    config.optim.update(lr=1e-3, warmup_steps=100, grad_clip=1.0)
    config.train.update(num_steps=3000, ema_decay=0.99)
  elif data == 'digits':
    config.network.dropout = 0.0
    config.optim.update(lr=1e-4, warmup_steps=200, grad_clip=1.0)
    config.train.update(num_steps=4000, ema_decay=0.999)
  else:
    config.network.dropout = 0.0
    config.optim.update(lr=4e-4, warmup_steps=19_531, grad_clip=0.0)
    config.train.update(num_steps=800_000, ema_decay=0.9999)
  return config
