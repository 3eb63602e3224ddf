"""SlimFlow (Zhu et al. 2024, "SlimFlow: Training Smaller One-Step Diffusion Models with
Rectified Flow"): a small student, Annealing Reflow then Flow-Guided Distillation in one run.

  python -m fastgen.main --config=configs/slimflow_gmm2d.py --workdir=runs/slimflow_gmm2d  # ~2 min
  # the baseline SlimFlow must beat: the same small net regressed in one step onto the same
  # couplings from a random init, same number of steps
  python -m fastgen.main --config=configs/slimflow_gmm2d.py:one_step_regression \\
      --workdir=runs/slimflow_gmm2d_baseline
  python -m fastgen.main --config=configs/edm_digits.py --workdir=runs/edm_digits   # teacher
  python -m fastgen.main --config=configs/slimflow_digits.py --workdir=runs/slimflow_digits
  python -m fastgen.main --config=configs/slimflow_digits.py:one_step_regression \\
      --workdir=runs/slimflow_digits_baseline
  python -m fastgen.main --config=configs/slimflow_cifar.py --workdir=runs/slimflow_cifar \\
      --config.teacher.workdir=runs/flow_cifar --config.data.data_dir=/path/to/tfds

The first stage trains a small 2-flow by Annealing Reflow on the reflow configs' couplings of the
teacher's Heun ODE (<workdir>/couplings); the second distils it into one step on the same
couplings with flow guidance from the 2-flow (the official distillation command's stored pairs;
``--config.objective.distill_pairs=two_flow`` distils onto fresh 8-step Euler pairs of the
2-flow instead).

- gmm2d: steps 0-1999 Annealing Reflow on 65,536 pairs of Heun 64 steps, beta(k) =
  exp(-k / 400); steps 2000-3999 Flow-Guided Distillation. The student has 2 residual blocks of
  width 64 (the reflow and InstaFlow gmm2d students: 3 of width 128).
- digits: a student UNet with half the channels and one block per level (about 1/7 of the
  edm_digits teacher's parameters); steps 0-1999 Annealing Reflow on 10,240 pairs of Heun 18,
  beta(k) = exp(-k / 500); steps 2000-3999 Flow-Guided Distillation. (gmm2d and digits anneal
  exponentially, the schedule their measured runs in docs/results.md used; cifar follows the
  official linear one.)
- cifar, accelerator scale: the student follows SlimFlow's smaller CIFAR-10 nets (the paper's
  Table 1: EDM UNets with fewer channels and blocks): 64 base channels, multipliers (1, 2, 2), 2
  blocks per level, about a tenth of the DDPM++ teacher's 56M parameters. Annealing Reflow for
  200k steps on 200k couplings of the teacher's Heun-18 ODE with beta(k) = 1 - min(k / 75k, 1),
  then Flow-Guided Distillation for 100k steps. The official README's Annealing Reflow command
  (github.com/yuanzhi-zhu/SlimFlow) anneals linearly (``--config.training.x0_randomness
  warmup_300000``) at its batch 128 and distils from ``checkpoint_16`` (step 800k of
  ``snapshot_freq 50000``); at batch 512 the same numbers of samples are 75k and 200k steps.
  Differences: batch 512 instead of 128 (lr 2e-4 kept), steps scaled to the same samples; the
  official code's horizontal flip of coupling pairs and its LPIPS distillation loss are not used
  (squared L2 in both stages).

Variant ``one_step_regression``: SlimFlow's baseline, the same small net regressed in one step
onto the same couplings from a random init (the ``instaflow`` objective, squared L2).
"""

from fastgen.configs import data_presets, reflow

DATA_SETS = ('gmm2d', 'digits', 'cifar')
VARIANTS = ('one_step_regression',)


def get_config(arg: str = 'gmm2d'):
  data, variant = data_presets.parse_arg(arg, 'slimflow', DATA_SETS, VARIANTS)
  config = reflow.on_couplings(data, reflow.EDM_TEACHER_ODE_STEPS[data])
  config.teacher.update(data_presets.EDM_TEACHERS[data])
  config.optim.update(lr=1e-3, grad_clip=1.0)
  config.train.num_steps = 4000
  if data == 'gmm2d':
    config.network.update(hidden=64, depth=2, parameterization='flow')
    config.optim.warmup_steps = 100
    config.train.update(sample_every=2000, ema_decay=0.995)
    reflow_steps, annealing, annealing_steps = 2000, 'exp', 400
  elif data == 'digits':
    config.network.update(parameterization='flow', model_channels=8, num_blocks=1, dropout=0.0)
    config.optim.warmup_steps = 200
    config.train.update(log_every=100, ema_decay=0.999)
    reflow_steps, annealing, annealing_steps = 2000, 'exp', 500
  else:
    config.network.update(parameterization='flow', model_channels=64, channel_mult=(1, 2, 2),
                          num_blocks=2, dropout=0.0)
    config.optim.update(lr=2e-4, warmup_steps=5000)
    config.train.update(num_steps=300_000, ema_decay=0.9999)
    reflow_steps, annealing, annealing_steps = 200_000, 'linear', 75_000
  if variant == 'one_step_regression':
    config.objective.update(name='instaflow', metric='l2', couplings='dataset',
                            init_from_teacher=False)
  else:
    config.objective.update(name='slimflow', reflow_steps=reflow_steps, annealing=annealing,
                            annealing_steps=annealing_steps, time_distribution='uniform',
                            metric='l2', couplings='dataset', distill_pairs='couplings',
                            two_flow_steps=8, guidance_weight=1.0, guidance_steps=1,
                            init_from_teacher=False)
  return config
