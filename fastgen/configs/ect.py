"""Easy Consistency Tuning, ECT (Geng et al. 2024, "Consistency Models Made Easy"): a consistency
model tuned from a pretrained diffusion model with the r(t) mapping schedule.

  python -m fastgen.main --config=configs/edm_gmm2d.py --workdir=runs/edm_gmm2d   # teacher, CPU
  python -m fastgen.main --config=configs/ect_gmm2d.py --workdir=runs/ect_gmm2d   # CPU
  python -m fastgen.main --config=configs/edm_digits.py --workdir=runs/edm_digits   # teacher
  python -m fastgen.main --config=configs/ect_digits.py --workdir=runs/ect_digits   # CPU
  python -m fastgen.main --config=configs/ect_cifar.py --workdir=runs/ect_cifar \\
      --config.teacher.workdir=/path/to/edm_cifar_uncond_run \\
      --config.data.data_dir=/path/to/tensorflow_datasets
  python -m fastgen.main --config=configs/ect_imagenet64.py --workdir=runs/ect_imagenet64 \\
      --config.teacher.workdir=/path/to/edm_imagenet64_run \\
      --config.data.data_dir=/path/to/tensorflow_datasets

Everywhere the paper's loss (fastgen/objectives/ect.py): the student is the teacher's denoiser
(same network config, initialised from the teacher's EMA weights), weighted by 1 / (t - r), no
target EMA; but for imagenet64 (below), ln t ~ N(-1.1, 2.0^2), the sigmoid mapping function with
q = 2, k = 8, b = 1 and the L2 norm (c = 0). 2-step sampling re-noises to
``intermediate_sigmas``.

- gmm2d: the teacher is a fastgen run of configs/edm_gmm2d.py (``teacher.workdir``, default
  runs/edm_gmm2d); the student has its network (4 blocks of width 256). 3000 steps in 6 stages of
  d = 500 (the paper: 8 stages of 25k); 2-step level 0.821 as CIFAR-10's.
- digits: the teacher is the edm_digits run (``teacher.workdir=runs/edm_digits``); the student
  is its network (configs/edm.py digits = the digits preset, dropout 0.1) from its EMA weights.
  1500 steps in 6 stages of d = 250, lr 1e-4 without warm-up (tuning, as cd_digits), EMA 0.99 (a
  horizon of 100 steps: at 0.999 the 1500-step EMA kept 22% of the initial weights);
  CIFAR-10's mapping (q = 2), loss and 2-step level 0.821.
- cifar: the official CIFAR-10 run (locuslab/ect run_ecm.sh): unconditional DDPM++ from EDM's
  unconditional VP model (import edm-cifar10-32x32-uncond-vp.pkl, docs/edm_import.md, or train
  configs/edm_cifar.py with --config.network.num_classes=0), batch 128, 200k iterations, d = 25k
  (250 ticks of 12.8 kimg), lr 1e-4 without warm-up, no gradient clipping, dropout 0.2, EMA
  0.9999, 2-step sampling through sigma = 0.821. Paper: 1-step FID 3.60, 2-step 2.11 (ECM-S 400k
  at batch 128; the official README: 3.86 at 200k). Differences: Adam instead of RAdam.
- imagenet64: class-conditional, the official ImageNet 64x64 run (locuslab/ect, branch imgnet:
  run_imgnet_ecm.sh with ct_train.py's preset edm2-img64-s): batch 128, 12.8 Mimg = 100k
  iterations, d = 500 ticks of 6.4 kimg = 25k iterations, q = 4, k = 8, b = 1, c = 0.06,
  ln t ~ N(-0.8, 1.6^2), Adam lr 1e-3 with betas (0.9, 0.99) and eps 1e-8, dropout 0.40, EMA
  0.9999, 2-step sampling through sigma = 1.526. Differences: the teacher and student are EDM's
  ADM ImageNet-64 model (edm-imagenet-64x64-cond-adm, configs/edm_imagenet64.py), not EDM2-S
  (edm2-img64-s-1073741-0.075, whose network fastgen lacks); a constant learning rate (the
  official decays it as 1e-3 / sqrt(max(step / 2000, 1)), which fastgen's optimizer lacks); ECT's
  1 / (t - r) weighting instead of the run's ``snrpk`` weighting; dropout at every resolution
  (the official: at 16x16 and below); fp32.
"""

from fastgen.configs import data_presets

DATA_SETS = ('gmm2d', 'digits', 'cifar', 'imagenet64')


def get_config(arg: str = 'gmm2d'):
  data, _ = data_presets.parse_arg(arg, 'ect', DATA_SETS)
  config = data_presets.start(data)
  config.teacher.update(kind='checkpoint', workdir='runs/edm_gmm2d' if data == 'gmm2d' else
                        data_presets.EDM_TEACHERS[data]['workdir'])
  config.objective.update(name='ect', p_mean=-1.1, p_std=2.0, q=2.0, k=8.0, b=1.0,
                          stage_steps=25_000, ratio_limit=1.0, huber_c=0.0,
                          intermediate_sigmas=(0.821,), init_from_teacher=True)
  if data == 'gmm2d':
    config.network.update(hidden=256, depth=4)  # configs/edm_gmm2d.py's network
    config.objective.stage_steps = 500
    config.optim.update(lr=1e-4, warmup_steps=0, grad_clip=1.0)
    config.train.update(num_steps=3000, ema_decay=0.99)
  elif data == 'digits':
    config.objective.stage_steps = 250
    config.optim.update(lr=1e-4, warmup_steps=0, grad_clip=1.0)
    config.train.update(num_steps=1500, checkpoint_every=500, sample_every=500, ema_decay=0.99)
  elif data == 'imagenet64':
    config.data.batch_size = 128
    config.network.dropout = 0.4
    config.objective.update(p_mean=-0.8, p_std=1.6, q=4.0, huber_c=0.06,
                            intermediate_sigmas=(1.526,))
    config.optim.update(lr=1e-3, warmup_steps=0, b2=0.99, grad_clip=0.0)
    config.train.update(num_steps=100_000, ema_decay=0.9999)
  else:
    config.data.batch_size = 128
    config.network.update(dropout=0.2, num_classes=0)
    config.optim.update(lr=1e-4, warmup_steps=0, grad_clip=0.0)
    config.train.update(num_steps=200_000, ema_decay=0.9999)
  config.eval.steps = (1, 2)
  return config
