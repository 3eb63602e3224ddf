"""DMD one-step generators (Yin et al. 2024a, "One-step Diffusion with Distribution Matching
Distillation"): distribution matching plus lambda_reg = 0.25 (the paper's weight) times the
regression loss on noise -> teacher-sample pairs, squared L2 in place of the paper's LPIPS.

  python -m fastgen.main --config=configs/dmd_gmm2d.py --workdir=runs/dmd_gmm2d  # CPU, minutes
  python -m fastgen.main --config=configs/edm_digits.py --workdir=runs/edm_digits   # teacher
  python -m fastgen.main --config=configs/dmd_digits.py --workdir=runs/dmd_digits
  python -m fastgen.main --config=configs/dmd_cifar.py --workdir=runs/dmd_cifar \\
      --config.teacher.workdir=/path/to/edm_cifar10_cond_converted \\
      --config.data.source.data_dir=/path/to/tensorflow_datasets

The pairs are the coupling data set (``data.name='couplings'``, :mod:`fastgen.couplings`): on
first use the trainer solves the teacher's ODE (Heun, ``ode_steps`` steps from sigma_max = 80,
the generator's ``sigma_init``) for ``num_pairs`` noises (and labels) and writes them to
``<workdir>/couplings``. Generator input sigma 80.

- gmm2d: 16,384 pairs of Heun 32 steps (63 evaluations), 4 shards. The teacher is the exact
  denoiser of the gmm2d distribution, so generator and fake score start from a fresh init; Adam
  with beta1 = 0 as in SiD's and DMD2's code, a larger learning rate than the papers' because the
  networks start from scratch.
- digits: 4096 pairs of Heun 18 steps (35 evaluations; a few minutes on 2 CPU cores). Generator
  and fake score start from the teacher (edm_digits' network); Adam with beta1 = 0 and lr 1e-4 as
  the sid_digits config, for a CPU budget of a few thousand steps (the paper: 2e-6 on
  ImageNet-64); the README's digits row ran it shortened to 500 steps. Samples:
  runs/dmd_digits/samples/step_*.png (column i = digit i). The fake score learns at EDM's
  log-normal noise levels (``fake_score_sigma='lognormal'``), not the official Karras grid:
  shortened as docs/results.md's convergence study (same teacher and seed), 1-step FID 16.9 and
  2.94 at steps 250 and 500 against 24.6 and 6.02 on the grid, which reached 3.50 only at 1500.
- cifar: class-conditional, from the EDM DDPM++ cond. VP teacher (the paper's CIFAR-10 cond. FID:
  2.66), accelerator scale; 102,400 pairs of Heun 18 steps, as the paper builds its CIFAR-10 pair
  set with EDM's sampler. Generator and fake score start from the teacher. The optimizer settings
  are those DMD2's code uses for its DMD baseline (AdamW (0.9, 0.999), weight decay 0.01, lr
  2e-6, clipping at 10); the DMD paper's exact CIFAR-10 optimizer settings are not restated here.
"""

from fastgen.configs import data_presets

DATA_SETS = ('gmm2d', 'digits', 'cifar')


def distribution_matching(data: str):
  """The data preset with what DMD and DMD2 share: the EDM teacher, generator input sigma 80,
  the fake score's noise levels uniform on the Karras grid (the objective's default), and the
  optimizer of each data set."""
  config = data_presets.start(data)
  config.teacher.update(data_presets.EDM_TEACHERS[data])
  config.objective.update(name='dmd', sigma_init=80.0, fake_score_sigma='karras_grid',
                          init_from_teacher=True)
  config.optim.update(lr=1e-4, warmup_steps=0, b1=0.0, b2=0.999, eps=1e-8, grad_clip=10.0)
  if data == 'gmm2d':
    config.objective.update(init_from_teacher=False)
    config.optim.update(warmup_steps=100, grad_clip=1.0)
  elif data == 'cifar':
    config.optim.update(lr=2e-6, b1=0.9, weight_decay=0.01)
    config.train.update(num_steps=400_000, ema_decay=0.999, skip_nonfinite=True)
  return config


def get_config(arg: str = 'gmm2d'):
  data, _ = data_presets.parse_arg(arg, 'dmd', DATA_SETS)
  config = distribution_matching(data)
  config.objective.regression_weight = 0.25
  if data == 'gmm2d':
    data_presets.couplings(config, num_pairs=16_384, shard_size=4096, ode_steps=32)
    config.train.update(num_steps=4000, checkpoint_every=2000, sample_every=2000,
                        ema_decay=0.99)
  elif data == 'digits':
    data_presets.couplings(config, num_pairs=4096, shard_size=1024, ode_steps=18)
    config.train.update(num_steps=4000, ema_decay=0.999)
    config.objective.fake_score_sigma = 'lognormal'  # why: the digits item above
  else:
    config.data.update(batch_size=256, random_flip=False)
    data_presets.couplings(config, num_pairs=102_400, shard_size=1024, ode_steps=18)
  return config
