"""Truncated consistency models, TCM (Lee et al. 2024, "Truncated Consistency Models"): stage 1
a standard consistency model (ECT), stage 2 the truncated model over [t', T] with the stage-1
model as its boundary condition at t'.

  python -m fastgen.main --config=configs/edm_gmm2d.py --workdir=runs/edm_gmm2d   # teacher, CPU
  python -m fastgen.main --config=configs/tcm_gmm2d.py:stage1 --workdir=runs/tcm_gmm2d_stage1
  python -m fastgen.main --config=configs/tcm_gmm2d.py --workdir=runs/tcm_gmm2d
  python -m fastgen.main --config=configs/edm_digits.py --workdir=runs/edm_digits   # teacher
  python -m fastgen.main --config=configs/tcm_digits.py:stage1 --workdir=runs/tcm_digits_stage1
  python -m fastgen.main --config=configs/tcm_digits.py --workdir=runs/tcm_digits
  python -m fastgen.main --config=configs/tcm_cifar.py:stage1 --workdir=runs/tcm_cifar_stage1 \\
      --config.teacher.workdir=/path/to/edm_cifar_uncond_run \\
      --config.data.data_dir=/path/to/tensorflow_datasets
  python -m fastgen.main --config=configs/tcm_cifar.py --workdir=runs/tcm_cifar \\
      --config.teacher.workdir=runs/tcm_cifar_stage1 \\
      --config.data.data_dir=/path/to/tensorflow_datasets

``:stage1`` is the ECT rule (configs/ect.py) with TCM's stage-1 settings; stage 2 (rule ``tcm``)
reads the stage-1 run as its ``teacher`` (``teacher.kind='checkpoint'``): the student starts from
its EMA weights and it is the frozen boundary model below t'. Stage 2 continues the r(t)
schedule from ``objective.start_stage`` = stage 1's last stage (the official stage 2 resumes at
stage 1's tick).

- gmm2d: stage 1 = configs/ect_gmm2d.py (3000 steps, stages of 500); stage 2: the official
  CIFAR-10 stage-2 recipe (t' = 1, ln t ~ Student-t(0, 0.2, df 0.01) on [ln 1, ln 80], 25% of
  each batch at t', boundary weight 0.1, ratio limit 0.999, c = 1e-8) for 1500 steps at half
  stage 1's learning rate, as the official scripts (1e-4 -> 5e-5).
- digits: stage 1 = configs/ect_digits.py (from the edm_digits run, 1500 steps, stages of 250);
  stage 2: the same stage-2 recipe for 750 steps at half stage 1's learning rate.
- cifar: the official scripts (NVlabs/TCM README): stage 1 ECT from EDM's unconditional VP
  DDPM++ at batch 512, lr 1e-4, dropout 0.2, c = 1e-8, ratio limit 0.999, d = 25k; stage 2 at
  batch 1024, lr 5e-5, the stage-2 recipe above; both EMA 0.9999, no warm-up or clipping, and
  the scripts' iteration budget (3M; the paper reports FID 2.46 / 2.05 at 1 / 2 steps).
  Differences: Adam instead of RAdam.
"""

import ml_collections

from fastgen.configs import data_presets
from fastgen.configs import ect as ect_configs

DATA_SETS = ('gmm2d', 'digits', 'cifar')
VARIANTS = ('stage1',)


def get_config(arg: str = 'gmm2d'):
  data, variant = data_presets.parse_arg(arg, 'tcm', DATA_SETS, VARIANTS)
  config = ect_configs.get_config(data)
  if data == 'cifar':
    config.data.batch_size = 512
    config.objective.update(ratio_limit=0.999, huber_c=1e-8)
    config.train.num_steps = 3_000_000
  if variant == 'stage1':
    return config
  stage1_steps, stage_steps = config.train.num_steps, config.objective.stage_steps
  config.teacher.update(kind='checkpoint',
                        workdir=f'runs/tcm_{data}_stage1' if data != 'cifar' else '')
  config.objective = ml_collections.ConfigDict(dict(
      name='tcm', transition_sigma=1.0, p_mean=0.0, p_std=0.2, df=0.01, sigma_max=80.0,
      boundary_fraction=0.25, boundary_weight=0.1, q=2.0, k=8.0, b=1.0, stage_steps=stage_steps,
      start_stage=stage1_steps // stage_steps, ratio_limit=0.999, huber_c=1e-8,
      intermediate_sigmas=(0.821,), init_from_teacher=True))
  config.optim.lr = config.optim.lr / 2
  config.eval.teacher_steps = 0  # the teacher is the stage-1 consistency model: no Heun sampler
  if data == 'gmm2d':
    config.train.num_steps = 1500
  elif data == 'digits':
    config.train.num_steps = 750
  else:
    config.data.batch_size = 1024
  return config
