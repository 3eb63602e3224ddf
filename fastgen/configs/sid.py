"""SiD one-step generators (Zhou et al. 2024, "Score identity Distillation").

  python -m fastgen.main --config=configs/sid_gmm2d.py --workdir=runs/sid_gmm2d   # CPU, ~1 min
  python -m fastgen.main --config=configs/edm_digits.py --workdir=runs/edm_digits   # teacher
  python -m fastgen.main --config=configs/sid_digits.py --workdir=runs/sid_digits
  python -m fastgen.main --config=configs/sid_cifar.py --workdir=runs/sid_cifar \\
      --config.teacher.workdir=/path/to/edm_cifar10_cond_converted \\
      --config.data.data_dir=/path/to/tensorflow_datasets
  python -m fastgen.main --config=configs/sid_imagenet64.py --workdir=runs/sid_imagenet64 \\
      --config.teacher.workdir=/path/to/edm_imagenet64_cond_adm_converted \\
      --config.data.data_dir=/path/to/tensorflow_datasets

Everywhere: alpha 1.2, sigma_init 2.5, generator times u in [0, 0.8] of the teacher's noise
range (the official ``tmax`` 800 of 1000), Adam with beta1 = 0 as in the official code. The data
set only sets the batch size and image shape; labels are drawn uniformly.

- gmm2d: the teacher is the exact denoiser of the gmm2d distribution, so generator and fake score
  start from a fresh init (``init_from_teacher=False``); a larger learning rate than the paper's
  1e-5 because the networks start from scratch.
- digits: the student network is the edm_digits teacher's, so generator and fake score both
  start from the teacher's EMA params (SiD's initialisation); the learning rate is 10x the
  paper's CIFAR-10 value, for a CPU budget of a few thousand steps. A SiD step costs several EDM
  steps (two generator passes, fake score, teacher); the README's digits row ran these settings
  shortened to 1500 steps. Samples: runs/sid_digits/samples/step_*.png (column i = digit i).
  The fake score learns on train-mode generator samples (dropout 0.1 on, as the generator's own
  loss samples; ``fake_score_samples_in_train_mode``), not the official inference mode: measured
  side by side (same seed and teacher, 1500 steps shortened as docs/results.md's convergence
  study), 1-step FID 8.45, 2.01, 1.66, 1.66, 1.62, 1.56 at steps 250..1500 in train mode against
  9.88, 2.94, 2.53, 2.48, 2.59, 2.50 in inference mode (teacher 1.58). SIM's, SiDA's and
  Uni-Instruct's digits presets inherit it (1-step 1.41, 1.50 and 1.64 at 1500 steps, against
  2.59 and 2.89 for SIM and SiDA in inference mode; docs/results.md).
- cifar: class-conditional, from the EDM DDPM++ cond. VP teacher, accelerator scale.
  ``teacher.workdir`` is a fastgen workdir holding the teacher (EDM's edm-cifar10-32x32-cond-vp
  converted to fastgen's format, or a run of configs/edm_cifar.py). Settings of the official
  code's ``run_sid.sh cifar10-cond`` (github.com/mingyuanzhou/SiD): alpha 1.2, sigma_init 2.5,
  tmax 800, batch 256, Adam lr 1e-5 for both networks with betas (0, 0.999) and eps 1e-8, no
  warm-up or clipping, EMA half-life 0.5 Mimg, dropout 0.13, fp32 (``--fp16 0``;
  ``network.dtype='bfloat16'`` is untested with SiD), 800 Mimg = 3,125,000 steps (the
  script's ``--duration 800`` since its February 2025 revision 70b3cbd; 100 Mimg before).
  Differences: no EMA ramp-up, no augmentation of the fake-score loss (the script's default
  ``--augment 0.12``), and a non-finite step is skipped where the official code zeroes
  non-finite gradient entries. The data set only sets
  shapes; it must be on disk.
- imagenet64: class-conditional, from EDM's ADM ImageNet-64 model (edm-imagenet-64x64-cond-adm
  converted, docs/edm_import.md, or a run of configs/edm_imagenet64.py); generator and fake score
  have its network and start from it. Settings of the official ``run_sid.sh imagenet64-cond``
  (github.com/mingyuanzhou/SiD at 01fbb13, lines 73-98): alpha 1.2, sigma_init 2.5, tmax 800,
  batch 8192, Adam lr 4e-6 for both networks (``--lr``, ``--glr``), dropout 0.1, no augmentation
  (``--augment 0``), EMA half-life 2 Mimg (``--ema 2``: decay 0.5 ** (8192 / 2e6) per step),
  1000 Mimg = 122,071 steps (``--duration 1000``; the script's comment, lines 11-16: the length
  behind the paper's ImageNet 64x64 figure, FID 1.524 in the repository's README); from
  sid_train.py (lines 152-153), Adam betas (0, 0.999) and, as the run is fp16 (``--fp16 1``),
  eps 1e-6. Differences: fp32 (``network.dtype='bfloat16'`` is untested with SiD) with the fp16
  run's eps, no EMA ramp-up (the official loop's ``ema_rampup_ratio`` 0.05), a non-finite step
  skipped as for cifar. The data set only sets shapes; it must be on disk.
"""

from fastgen.configs import data_presets

DATA_SETS = ('gmm2d', 'digits', 'cifar', 'imagenet64')


def get_config(arg: str = 'gmm2d'):
  data, _ = data_presets.parse_arg(arg, 'sid', DATA_SETS)
  config = data_presets.start(data)
  config.teacher.update(data_presets.EDM_TEACHERS[data])
  config.objective.update(name='sid', alpha=1.2, sigma_init=2.5, u_min=0.0, u_max=0.8,
                          p_mean=-1.2, p_std=1.2, init_from_teacher=True)
  config.optim.update(lr=1e-4, warmup_steps=0, b1=0.0, b2=0.999, eps=1e-8, grad_clip=0.0)
  if data == 'gmm2d':
    config.objective.update(p_mean=-0.4, p_std=1.4, init_from_teacher=False)
    config.optim.update(warmup_steps=100, grad_clip=1.0)
    config.train.update(num_steps=4000, checkpoint_every=2000, sample_every=2000,
                        ema_decay=0.99)
  elif data == 'digits':
    config.train.update(num_steps=4000, ema_decay=0.999)
    config.objective.fake_score_samples_in_train_mode = True  # why: the digits item above
  elif data == 'cifar':
    config.data.update(batch_size=256, random_flip=False)
    config.optim.lr = 1e-5
    config.train.update(num_steps=3_125_000, ema_decay=0.5 ** (256 / 5e5),
                        skip_nonfinite=True)
  else:
    config.data.update(batch_size=8192, random_flip=False)
    config.network.dropout = 0.1
    config.optim.update(lr=4e-6, eps=1e-6)
    config.train.update(num_steps=122_071, ema_decay=0.5 ** (8192 / 2e6), skip_nonfinite=True)
  return config
