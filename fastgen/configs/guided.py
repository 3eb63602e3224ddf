"""Guided-model distillation (Meng et al. 2023, "On Distillation of Guided Diffusion Models"):
stage one distils the classifier-free-guided teacher, w ~ U[0, 4], into one w-conditioned
student; stage two halves its DDIM steps progressively, w kept as an input.

  python -m fastgen.main --config=configs/guided_gmm2d.py --workdir=runs/guided_gmm2d  # CPU
  python -m fastgen.main --config=configs/guided_cifar.py --workdir=runs/guided_cifar \\
      --config.teacher.workdir=/path/to/edm_cifar10_cond_converted \\
      --config.data.data_dir=/path/to/tensorflow_datasets

No EMA, gradient clipping 1 (as progressive distillation); ``sample.num_steps=0`` samples with
the current round's step count, at w = ``objective.sample_w``.

- gmm2d: the teacher is the exact class-conditional mixture (one class per component, the null
  label sees all eight), so the guided denoiser D_w is exact; the student is the gmm2d MLP with
  eight classes, fresh (``init_from_teacher=False``). Stage one 1500 steps, then 8 -> 1 steps
  in 4 rounds of 750. The in-loop exact evaluation is off: it measures against the unguided
  mixture, which a guided sampler does not target (tests/objectives/test_guided.py measures the
  student against the exact guided denoiser).
- cifar: class-conditional, from the EDM DDPM++ cond. teacher (which must have been trained with
  label dropout, so that the null label is a model); the student starts from the teacher with a
  zero w embedding. w ~ U[0, 4] as the paper; stage one then 1024 -> 1 steps (11 rounds) with
  progressive distillation's CIFAR-10 optimizer (batch 128, Adam lr 5e-5, 50k updates per
  round, dropout 0). The round lengths and optimizer are progressive distillation's, not checked
  against Meng et al.'s appendix.
"""

from fastgen.configs import data_presets

DATA_SETS = ('gmm2d', 'cifar')


def get_config(arg: str = 'gmm2d'):
  data, _ = data_presets.parse_arg(arg, 'guided', DATA_SETS)
  config = data_presets.start(data)
  config.teacher.update(data_presets.EDM_TEACHERS[data])
  config.objective.update(name='guided', w_min=0.0, w_max=4.0, sample_w=2.0, final_steps=1,
                          init_from_teacher=True)
  config.optim.update(warmup_steps=0, grad_clip=1.0)
  config.train.ema_decay = 0.0
  config.sample.num_steps = 0
  if data == 'gmm2d':
    config.teacher.conditional = True
    config.network.num_classes = 8
    config.objective.update(stage_one_steps=1500, initial_steps=8, steps_per_round=750,
                            init_from_teacher=False)
    config.optim.update(lr=5e-4, warmup_steps=100)
    config.train.update(num_steps=4500, log_every=250, checkpoint_every=750, sample_every=750)
    config.eval.every = 0
  else:
    config.data.batch_size = 128
    config.network.dropout = 0.0
    config.objective.update(stage_one_steps=50_000, initial_steps=1024, steps_per_round=50_000)
    config.optim.lr = 5e-5
    config.train.num_steps = 12 * 50_000
  return config
