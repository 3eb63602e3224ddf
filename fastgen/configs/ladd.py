"""LADD (Sauer et al. 2024, "Fast High-Resolution Image Synthesis with Latent Adversarial
Diffusion Distillation"): a one-step student from the teacher, trained with the hinge loss of a
discriminator head on the frozen teacher's features, on the teacher's own samples.

  python -m fastgen.main --config=configs/edm_gmm2d.py --workdir=runs/edm_gmm2d   # teacher, CPU
  python -m fastgen.main --config=configs/ladd_gmm2d.py --workdir=runs/ladd_gmm2d  # CPU
  python -m fastgen.main --config=configs/ladd_digits.py --workdir=runs/ladd_digits  # CPU
  python -m fastgen.main --config=configs/ladd_cifar.py --workdir=runs/ladd_cifar \\
      --config.teacher.workdir=/path/to/edm_cifar10_cond_converted \\
      --config.data.source.data_dir=/path/to/tensorflow_datasets

Everywhere LADD's recipe (fastgen/objectives/ladd.py): the student is the teacher's network and
starts from its weights; the "real" data is synthetic, the teacher's Heun samples (the coupling
data set, ``data.name='couplings'``, solved once into ``<workdir>/couplings``); re-noising levels
from the logit-normal with m = s = 1; no distillation loss (``distillation_weight=0``; ADD's
2.5 adds it); the student's first level is sigma = 80. LADD does not state its optimizer
settings: Adam with beta1 = 0 as fastgen's other adversarial rules (DMD2, SiDA).

- gmm2d: the teacher is a fastgen run of configs/edm_gmm2d.py (``teacher.workdir``, default
  runs/edm_gmm2d; the closed-form mixture has no features), so the student has its network (4
  blocks of width 256); 16,384 teacher samples (Heun 18 steps); the head reads the 256-wide trunk.
- digits: the edm_digits run (runs/edm_digits) as teacher, 4096 teacher samples (Heun 18 steps);
  the head reads the 4x4 bottleneck.
- cifar: the EDM DDPM++ cond. VP teacher, 102,400 teacher samples (Heun 18 steps, as DMD's pair
  set), accelerator scale, lr 1e-5 for both groups (an assumption, not the paper's), batch 256.
"""

from fastgen.configs import data_presets

DATA_SETS = ('gmm2d', 'digits', 'cifar')


def get_config(arg: str = 'gmm2d'):
  data, _ = data_presets.parse_arg(arg, 'ladd', DATA_SETS)
  config = data_presets.start(data)
  config.teacher.update(data_presets.EDM_TEACHERS[data])
  config.objective.update(name='ladd', student_steps=1, sigma_init=80.0, logit_mean=1.0,
                          logit_std=1.0, distillation_weight=0.0, init_from_teacher=True)
  config.optim.update(lr=1e-4, warmup_steps=0, b1=0.0, b2=0.99, grad_clip=1.0)
  if data == 'gmm2d':
    config.teacher.update(kind='checkpoint', workdir='runs/edm_gmm2d')
    config.network.update(hidden=256, depth=4)  # configs/edm_gmm2d.py's network
    data_presets.couplings(config, num_pairs=16_384, shard_size=4096, ode_steps=18)
    config.train.update(num_steps=3000, ema_decay=0.99)
  elif data == 'digits':
    data_presets.couplings(config, num_pairs=4096, shard_size=1024, ode_steps=18)
    config.train.update(num_steps=3000, ema_decay=0.999)
  else:
    config.data.update(batch_size=256, random_flip=False)
    data_presets.couplings(config, num_pairs=102_400, shard_size=1024, ode_steps=18)
    config.optim.update(lr=1e-5, grad_clip=10.0)
    config.network.dropout = 0.0
    config.train.update(num_steps=200_000, ema_decay=0.999, skip_nonfinite=True)
  config.eval.steps = (1, 2, 4)
  return config
