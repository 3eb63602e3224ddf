"""sCT, continuous-time consistency training (Lu & Song 2024, "Simplifying, Stabilizing and
Scaling Continuous-Time Consistency Models", arXiv:2410.11081), in TrigFlow: no teacher.

  python -m fastgen.main --config=configs/sct_gmm2d.py --workdir=runs/sct_gmm2d     # CPU
  python -m fastgen.main --config=configs/sct_digits.py --workdir=runs/sct_digits   # CPU
  python -m fastgen.main --config=configs/sct_cifar.py --workdir=runs/sct_cifar \\
      --config.data.data_dir=/path/to/tensorflow_datasets
  python -m fastgen.main --config=configs/sct_imagenet64.py --workdir=runs/sct_imagenet64 \\
      --config.data.data_dir=/path/to/tensorflow_datasets

Everywhere the paper's objective (fastgen/objectives/scm.py): tau ~ N(P_mean, P_std^2), tangent
normalization c = 0.1, learned adaptive weighting, tangent warm-up, target theta- =
stop-gradient(theta); 1-step sampling from t_max = arctan(80 / sigma_d), 2-step through t = 1.1.

- gmm2d: the 2-D mixture data; P_mean, P_std = -1.0, 1.4 (the CIFAR-10 values), tangent warm-up
  over 500 of 3000 steps. sigma_d = 1.0 as the other gmm2d configs (the mixture's per-coordinate
  scale).
- digits: class-conditional, edm_digits' network (the digits preset) from a fresh init, sigma_d
  = 0.5 as the preset's EDM preconditioning (the data's std is 0.75); the CIFAR-10 P_mean, P_std
  and tangent normalization, the tangent warm-up over 300 of 1500 steps (the paper: 10k), Adam
  with beta2 = 0.99 (as the paper / NVIDIA FastGen), lr 1e-3 with a 100-step ramp. A CPU run
  (~1500 steps; one sCT step is a forward-mode product through the UNet, ~2-3 plain steps).
- cifar: unconditional, accelerator scale, the paper's network changes (§4.1): the DDPM++
  network with adaptive double normalization (``network.double_norm``) and TrigFlow time
  conditioning (``objective.time_conditioning='trig'``: c_noise = 1000 t; the paper feeds t to a
  positional embedding), from a fresh init. P_mean -1.0, P_std 1.4, tangent warm-up 10k
  iterations, c = 0.1, batch 512, Adam betas (0.9, 0.99), eps 1e-8, no weight decay, dropout
  0.2, EMA 0.9999 (sources below). Paper: 2-step FID 2.06 (the abstract's CIFAR-10 figure).
- imagenet64: class-conditional, accelerator scale, EDM's ADM network (the imagenet64 preset)
  from a fresh init, TrigFlow time conditioning, dropout 0; P_mean -1.0, P_std 1.6, batch 1024,
  Adam lr 7e-5, betas (0.9, 0.99), eps 1e-11, gradient clipping at 10, 600k iterations, EMA
  0.9999: NVIDIA FastGen's ImageNet-64 sCM settings (its sCD config; it has no ImageNet-64 sCT
  config), used for sCT as well.

Sources: the recipe's structure (P_mean/P_std, c = 0.1, warm-up 10k, 2-step t = 1.1) is the
paper's; the optimizer, batch, dropout, EMA and lengths are those of NVIDIA FastGen's sCM configs
(github.com/NVlabs/FastGen at 34f30e8: configs/methods/config_scm.py,
configs/experiments/EDM/config_sct_cifar10.py, config_scd_in64.py), which follow the paper; the
paper's appendix tables themselves were not re-read for these configs.

Differences from the paper: Adam with fastgen's linear warm-up and a constant rate (NVIDIA
FastGen's CIFAR-10 runs use RAdam at lr 1e-4, its ImageNet-64 runs Adam with an inverse
square-root decay from 35k iterations, which fastgen does not have); NVIDIA FastGen's CIFAR-10
sCT tunes EDM's unconditional DDPM++ checkpoint, here the student starts fresh (the double
normalization changes the architecture); the CIFAR-10 network is
EDM's DDPM++ with the paper's double normalization, not the paper's own model; ImageNet-64 uses
EDM's ADM network (EDM2's networks, the paper's ImageNet models, are not available in fastgen),
without the double normalization (a SongUNet option only); fp32 JVPs (the paper: mixed precision
with FlashAttention JVP kernels); one EMA (NVIDIA FastGen keeps 0.9999, 0.99995 and 0.9996);
350k CIFAR-10 iterations as NVIDIA FastGen's sCT run.
"""

from fastgen.configs import data_presets

DATA_SETS = ('gmm2d', 'digits', 'cifar', 'imagenet64')


def get_config(arg: str = 'gmm2d'):
  data, _ = data_presets.parse_arg(arg, 'sct', DATA_SETS)
  config = data_presets.start(data)
  config.objective.update(name='sct', p_mean=-1.0, p_std=1.4, warmup_steps=10_000,
                          normalization=0.1, intermediate_times=(1.1,))
  if data == 'gmm2d':
    config.objective.warmup_steps = 500
    config.optim.update(lr=1e-3, warmup_steps=100, grad_clip=1.0)
    config.train.update(num_steps=3000, ema_decay=0.99)
  elif data == 'digits':
    config.objective.warmup_steps = 300
    config.optim.update(lr=1e-3, warmup_steps=100, b2=0.99, grad_clip=1.0)
    config.train.update(num_steps=1500, checkpoint_every=500, sample_every=500, ema_decay=0.99)
  elif data == 'cifar':
    config.network.update(num_classes=0, dropout=0.2, double_norm=True)
    config.objective.time_conditioning = 'trig'
    config.optim.update(lr=1e-4, warmup_steps=0, b2=0.99, eps=1e-8, grad_clip=0.0)
    config.train.update(num_steps=350_000, ema_decay=0.9999)
  else:
    config.data.batch_size = 1024
    config.network.dropout = 0.0
    config.objective.update(p_std=1.6, time_conditioning='trig')
    config.optim.update(lr=7e-5, warmup_steps=0, b2=0.99, eps=1e-11, grad_clip=10.0)
    config.train.update(num_steps=600_000, ema_decay=0.9999)
  config.eval.steps = (1, 2)
  return config
