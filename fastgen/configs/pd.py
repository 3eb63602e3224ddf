"""Progressive distillation (Salimans & Ho 2022, "Progressive Distillation for Fast Sampling of
Diffusion Models"): the student's step count halves each round of ``steps_per_round``.

  python -m fastgen.main --config=configs/pd_gmm2d.py --workdir=runs/pd_gmm2d   # CPU, ~2 min
  python -m fastgen.main --config=configs/edm_digits.py --workdir=runs/edm_digits   # teacher
  python -m fastgen.main --config=configs/pd_digits.py --workdir=runs/pd_digits
  python -m fastgen.main --config=configs/pd_cifar.py --workdir=runs/pd_cifar \\
      --config.teacher.workdir=/path/to/edm_cifar_run \\
      --config.data.data_dir=/path/to/tensorflow_datasets

No EMA, gradient clipping 1, the learning rate annealed linearly to 0 within each round
(``optim.decay_per_round``), as the paper and its official config (``learning_rate_anneal_type=
'linear'`` over ``distill_steps_per_iter``), and a fresh Adam state each round
(``optim.restart_per_round``), as the official notebook's loop; ``sample.num_steps=0`` samples
with the current round's step count.

- gmm2d, 64 -> 1 steps: round 0 distils the exact teacher's 64-step DDIM sampler into a fresh
  32-step student (the teacher is a closed-form mixture, so ``init_from_teacher=False``); rounds
  1-5 halve to 16, 8, 4, 2, 1 steps, evaluated once per round. The students can only be as good
  as the sampler they distil: the teacher's DDIM has exact FD 0.0071 at 16 steps, 0.0016 at 32
  and 0.0004 at 64 (its Heun 35-NFE ODE: 0.0015), hence 64 teacher steps rather than 16.
- digits, 32 -> 1 steps: the student has edm_digits' network and starts from the teacher's EMA
  params; round 0 distils the teacher's 32-step DDIM sampler into 16 steps, then 8, 4, 2, 1 (5
  rounds); a larger learning rate than the paper's 5e-5 to fit a CPU budget. The students end
  within 1.35x of the 32-step DDIM they distil (1-step FID 3.76 against its 2.84; the teacher's
  Heun-35: 1.58; docs/results.md): a better student needs more teacher steps, i.e. more rounds
  (its DDIM: 2.25 at 64 steps, 2.03 at 128).
  Samples: runs/pd_digits/samples/step_*.png (column i = digit i).
- cifar, 8192 -> 1 steps, accelerator scale: the paper's CIFAR-10 distillation (Appendix;
  official diffusion_distillation config/cifar_distill.py): the student starts from the teacher,
  8192 teacher steps -> 4096-step student in round 0, halving to 1 step (13 rounds), 50k updates
  per round, batch 128, Adam lr 5e-5, dropout 0, truncated-SNR weighting. Differences: the
  network is the class-conditional DDPM++ of configs/edm_cifar.py with EDM preconditioning (an
  x-prediction) on EDM's time grid.
"""

from fastgen.configs import data_presets

DATA_SETS = ('gmm2d', 'digits', 'cifar')


def get_config(arg: str = 'gmm2d'):
  data, _ = data_presets.parse_arg(arg, 'pd', DATA_SETS)
  config = data_presets.start(data)
  config.teacher.update(data_presets.EDM_TEACHERS[data])
  config.objective.update(name='pd', final_steps=1, init_from_teacher=True)
  config.optim.update(warmup_steps=0, grad_clip=1.0)
  config.optim.update(decay_per_round=True, restart_per_round=True)
  config.train.ema_decay = 0.0
  config.sample.num_steps = 0
  if data == 'gmm2d':
    config.objective.update(initial_steps=32, steps_per_round=750, init_from_teacher=False)
    config.optim.update(lr=5e-4, warmup_steps=100)
    config.train.update(num_steps=4500, log_every=250, checkpoint_every=750, sample_every=750)
    config.eval.every = 750  # once per round
  elif data == 'digits':
    config.network.dropout = 0.0
    config.objective.update(initial_steps=16, steps_per_round=1000)
    config.optim.lr = 2e-4
    config.train.num_steps = 5000
  else:
    config.data.batch_size = 128
    config.network.dropout = 0.0
    config.objective.update(initial_steps=4096, steps_per_round=50_000)
    config.optim.lr = 5e-5
    config.train.num_steps = 13 * 50_000
  return config
