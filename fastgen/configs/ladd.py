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
data set, ``data.name='couplings'``, solved once into ``<workdir>/couplings``); no distillation
loss (``distillation_weight=0``; ADD's 2.5 adds it); the student's first level is sigma = 80;
re-noising levels from the logit-normal with m = s = 1, head and generator updated at every step.
Except on digits (below), where measurement changed these two and the head's learning rate, and
put a head on every level (LADD's design). LADD does not state its
optimizer settings: Adam with beta1 = 0 as fastgen's other adversarial rules (DMD2, SiDA).

- gmm2d: the teacher is a fastgen run of configs/edm_gmm2d.py (``teacher.workdir``, default
  runs/edm_gmm2d; the closed-form mixture has no features), so the student has its network (4
  blocks of width 256); 16,384 teacher samples (Heun 18 steps); the head reads the 256-wide trunk.
- digits: the edm_digits run (runs/edm_digits) as teacher, 4096 teacher samples (Heun 18 steps);
  the head reads the 2x2x32 bottleneck. Two deliberate differences from LADD, measured (issue 18):
  m = -1 (median sigma 0.18, not 1.36 = 2.7 sigma_data) and 5 head updates per generator update
  (``discriminator_updates_per_generator_update``, DMD2's two time-scale rule); and the head at
  30x the generator's learning rate (``head_lr_multiplier``; LADD states none). With the head at
  the generator's 1e-4 the run stalled at 1-step FID 20-21 from step 1500 (the convergence
  study's first LADD row) with the head's hinge loss at chance, yet a fresh head trained on that
  final student's samples against the teacher samples (1000 steps, same features and re-noising)
  told them apart with held-out AUC 0.62 at lr 1e-4 and 0.83 at 1e-3: the head was too slow to
  follow the generator. At 3000 steps the head at 10x gave 1-step 7.30 and 4.53 (seeds 0, 1), at
  30x 4.44 and 4.63 (6000 steps: 3.22); a fresh head then no longer separated the student on the
  bottleneck (AUC 0.52) while pixels still did (0.82). So, as LADD, a head on every level
  (``head_per_level``: the 8x8, 4x4 and 2x2 encoder maps): 1-step 3.47, 1.63, 1.58, 1.47 at steps
  750-3000, the teacher's own 1.58 reached at 2250. Not on cifar: a dense head on a flattened
  32x32x256 map would be a 67 M-parameter layer. On 8x8 digits
  high noise hides what tells the initial student's samples (the class mean) from teacher
  samples: a head trained alone against them for 300 steps (lr 1e-4) separates them with AUC
  0.49-0.52 at sigma = 1.36 and 4 (0.57 at lr 1e-3), 0.55-0.76 at sigma <= 0.5; its logit gap
  is 0.05, 0.14, 0.30 and 0.46 at m = 1, 0, -1 and -2. FID at 1/2/4 steps after 1500 steps
  (EMA 0.9933, seed 0): m = 1 268/208/163 (the student stays at the class mean); m = -1 alone
  58/25/19 at step 250, then the head falls behind the generator, 111/89/110; m = -1 with 5 head
  updates 21.9/15.9/9.8, still falling (43/24/8.8 at step 1000); ADD's distillation term (2.5) on
  top 40.1/24.2/6.5. EMA decay 1 - 1/60: the generator's EMA moves only at its updates (1 step
  in 5; the head trains at every step), so its horizon is a tenth of the run's 600 (as
  dmd2_digits').
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
                          logit_std=1.0, distillation_weight=0.0,
                          discriminator_updates_per_generator_update=1, head_per_level=False,
                          head_lr_multiplier=1.0,
                          init_from_teacher=True)
  config.optim.update(lr=1e-4, warmup_steps=0, b1=0.0, b2=0.99, grad_clip=1.0)
  if data == 'gmm2d':
    config.teacher.update(kind='checkpoint', workdir='runs/edm_gmm2d')
    config.network.update(hidden=256, depth=4)  # configs/edm_gmm2d.py's network
    data_presets.couplings(config, num_pairs=16_384, shard_size=4096, ode_steps=18)
    config.train.update(num_steps=3000, ema_decay=0.99)
  elif data == 'digits':
    data_presets.couplings(config, num_pairs=4096, shard_size=1024, ode_steps=18)
    config.objective.update(logit_mean=-1.0, discriminator_updates_per_generator_update=5,
                            head_lr_multiplier=30.0, head_per_level=True)
    # EMA horizon 60 generator updates, a tenth of the run's (its EMA moves only with them).
    config.train.update(num_steps=3000, ema_decay=1.0 - 1.0 / 60)
  else:
    config.data.update(batch_size=256, random_flip=False)
    data_presets.couplings(config, num_pairs=102_400, shard_size=1024, ode_steps=18)
    config.optim.update(lr=1e-5, grad_clip=10.0)
    config.network.dropout = 0.0
    config.train.update(num_steps=200_000, ema_decay=0.999, skip_nonfinite=True)
  config.eval.steps = (1, 2, 4)
  return config
