"""sCD, continuous-time consistency distillation (Lu & Song 2024, "Simplifying, Stabilizing and
Scaling Continuous-Time Consistency Models", arXiv:2410.11081), in TrigFlow.

  python -m fastgen.main --config=configs/scd_gmm2d.py --workdir=runs/scd_gmm2d     # CPU
  python -m fastgen.main --config=configs/edm_digits.py --workdir=runs/edm_digits   # teacher
  python -m fastgen.main --config=configs/scd_digits.py --workdir=runs/scd_digits   # CPU
  python -m fastgen.main --config=configs/scd_cifar.py --workdir=runs/scd_cifar \\
      --config.teacher.workdir=/path/to/edm_cifar_uncond_run \\
      --config.data.data_dir=/path/to/tensorflow_datasets
  python -m fastgen.main --config=configs/scd_imagenet64.py --workdir=runs/scd_imagenet64 \\
      --config.teacher.workdir=/path/to/edm_imagenet64_run \\
      --config.data.data_dir=/path/to/tensorflow_datasets

Everywhere the paper's objective (fastgen/objectives/scm.py) with dx_t/dt the teacher's PF-ODE
velocity, through the exact EDM -> TrigFlow conversion of fastgen/trigflow.py: tau ~ N(P_mean,
P_std^2), tangent normalization c = 0.1, learned adaptive weighting, tangent warm-up; 1-step
sampling from t_max = arctan(80 / sigma_d), 2-step through t = 1.1.

- gmm2d: the closed-form mixture teacher, so the student starts from a fresh init; P_mean, P_std
  = -1.0, 1.4 (the CIFAR-10 values), tangent warm-up over 500 steps.
- digits: the edm_digits teacher (``teacher.workdir=runs/edm_digits``); the student is its
  network (dropout 0) with EDM's c_noise (``time_conditioning='log_sigma'``), which makes an EDM
  network a TrigFlow network exactly, and starts from the teacher's EMA weights; sigma_d = 0.5,
  the teacher's (the data's std is 0.75). CIFAR-10's P_mean, P_std and c, tangent warm-up over
  300 of 1500 steps, Adam beta2 = 0.99, lr 1e-4 (tuning from the teacher, as cd_digits).
- cifar: unconditional, from EDM's unconditional VP DDPM++ (import
  edm-cifar10-32x32-uncond-vp.pkl, docs/edm_import.md, or train configs/edm_cifar.py with
  --config.network.num_classes=0), the student its network and weights with dropout 0; P_mean
  -1.0, P_std 1.4, tangent warm-up 10k iterations, c = 0.1, batch 512, Adam betas (0.9, 0.99),
  eps 1e-8, lr 1e-4, no weight decay, EMA 0.9999, 500k iterations.
- imagenet64: class-conditional, from EDM's ADM ImageNet-64 model (edm-imagenet-64x64-cond-adm,
  or a run of configs/edm_imagenet64.py), the student its network with dropout 0; P_mean -1.0,
  P_std 1.6, batch 1024, Adam lr 7e-5, betas (0.9, 0.99), eps 1e-11, gradient clipping at 10,
  EMA 0.9999, 600k iterations. Paper: 2-step FID 1.48 is its best ImageNet 64x64 figure (the
  abstract's; EDM2 networks).

Sources: the recipe's structure (P_mean/P_std, c = 0.1, warm-up 10k, 2-step t = 1.1) is the
paper's; batch, optimizer, dropout, EMA and lengths are those of NVIDIA FastGen's sCD configs
(github.com/NVlabs/FastGen at 34f30e8: configs/methods/config_scm.py,
configs/experiments/EDM/config_scd_cifar10.py, config_scd_in64.py), which start from the same EDM
checkpoints; the paper's appendix tables themselves were not re-read for these configs.

Differences from the paper: the teachers are EDM's (DDPM++ and ADM) rather than the paper's
TrigFlow diffusion models, so the student keeps EDM's network and time conditioning: neither
the paper's adaptive double normalization nor its c_noise(t) = t (both would change the network
the weights come from; configs/sct.py shows them); EDM2 networks (the paper's ImageNet models)
are not available; Adam with a constant rate (NVIDIA FastGen: RAdam at 1e-4 for CIFAR-10, an
inverse square-root decay from 35k iterations for ImageNet-64); fp32 JVPs without FlashAttention
kernels; one EMA (NVIDIA FastGen keeps 0.9999, 0.99995, 0.9996).
"""

from fastgen.configs import data_presets

DATA_SETS = ('gmm2d', 'digits', 'cifar', 'imagenet64')


def get_config(arg: str = 'gmm2d'):
  data, _ = data_presets.parse_arg(arg, 'scd', DATA_SETS)
  config = data_presets.start(data)
  config.teacher.update(data_presets.EDM_TEACHERS[data])
  config.objective.update(name='scd', p_mean=-1.0, p_std=1.4, warmup_steps=10_000,
                          normalization=0.1, intermediate_times=(1.1,), init_from_teacher=True)
  if data == 'gmm2d':
    config.objective.update(warmup_steps=500, init_from_teacher=False)
    config.optim.update(lr=1e-3, warmup_steps=100, grad_clip=1.0)
    config.train.update(num_steps=3000, ema_decay=0.99)
  elif data == 'digits':
    config.network.dropout = 0.0
    config.objective.warmup_steps = 300
    config.optim.update(lr=1e-4, warmup_steps=100, b2=0.99, grad_clip=1.0)
    config.train.update(num_steps=1500, checkpoint_every=500, sample_every=500, ema_decay=0.99)
  elif data == 'cifar':
    config.network.update(num_classes=0, dropout=0.0)
    config.optim.update(lr=1e-4, warmup_steps=0, b2=0.99, eps=1e-8, grad_clip=0.0)
    config.train.update(num_steps=500_000, ema_decay=0.9999)
  else:
    config.data.batch_size = 1024
    config.network.dropout = 0.0
    config.objective.p_std = 1.6
    config.optim.update(lr=7e-5, warmup_steps=0, b2=0.99, eps=1e-11, grad_clip=10.0)
    config.train.update(num_steps=600_000, ema_decay=0.9999)
  config.eval.steps = (1, 2)
  return config
