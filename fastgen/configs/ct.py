"""Improved consistency training, iCT (Song & Dhariwal 2024, "Improved Techniques for Training
Consistency Models"): no teacher.

  python -m fastgen.main --config=configs/ct_gmm2d.py --workdir=runs/ct_gmm2d   # CPU, ~1 min
  python -m fastgen.main --config=configs/ct_digits.py --workdir=runs/ct_digits
  python -m fastgen.main --config=configs/ct_cifar.py --workdir=runs/ct_cifar \\
      --config.data.data_dir=/path/to/tensorflow_datasets

Everywhere the paper's recipe (§3): pseudo-Huber metric, lognormal noise-index sampling
(P_mean = -1.1, P_std = 2.0), discretisation doubling from s0 = 10 to s1 = 1280 points over
``objective.total_steps`` (keep it equal to train.num_steps), no target EMA (target =
stop-gradient(student)).

- gmm2d: the 2-D mixture data, an MLP from a fresh init.
- digits: class-conditional, edm_digits' network from a fresh init, dropout 0.1. Samples:
  runs/ct_digits/samples/step_*.png (column i = digit i).
- cifar: unconditional, accelerator scale; their CIFAR-10 settings: pseudo-Huber c = 0.00054
  sqrt(3072), lambda = 1 / (sigma_{i+1} - sigma_i), 400k iterations, dropout 0.3, batch 1024,
  lr 1e-4, EMA 0.99993. Differences: the DDPM++ network of configs/edm_cifar.py (unconditional)
  instead of NCSN++, Adam instead of RAdam, fastgen's linear warm-up (10 Mimg, as Song et al.
  2023).
"""

from fastgen.configs import data_presets

DATA_SETS = ('gmm2d', 'digits', 'cifar')


def get_config(arg: str = 'gmm2d'):
  data, _ = data_presets.parse_arg(arg, 'ct', DATA_SETS)
  config = data_presets.start(data)
  config.objective.update(name='ct', s0=10, s1=1280, p_mean=-1.1, p_std=2.0)
  if data == 'gmm2d':
    config.optim.update(lr=1e-3, warmup_steps=100, grad_clip=1.0)
    config.train.update(num_steps=3000, ema_decay=0.99)
  elif data == 'digits':
    config.optim.update(lr=2e-3, warmup_steps=500, grad_clip=1.0)
    config.train.update(num_steps=8000, sample_every=2000, ema_decay=0.999)
  else:
    config.data.batch_size = 1024
    config.network.update(dropout=0.3, num_classes=0)
    config.optim.update(lr=1e-4, warmup_steps=9766, grad_clip=0.0)
    config.train.update(num_steps=400_000, ema_decay=0.99993)
  config.objective.total_steps = config.train.num_steps
  return config
