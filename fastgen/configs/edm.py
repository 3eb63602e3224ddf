"""EDM teachers (Karras et al. 2022): the denoiser trained with EDM's loss, sampled with Heun.

  python -m fastgen.main --config=configs/edm_gmm2d.py --workdir=runs/edm_gmm2d    # CPU, ~1 min
  python -m fastgen.main --config=configs/edm_digits.py --workdir=runs/edm_digits  # CPU, ~15 min
  python -m fastgen.main --config=configs/edm_cifar.py --workdir=runs/edm_cifar \\
      --config.data.data_dir=/path/to/tensorflow_datasets
  python -m fastgen.main --config=configs/edm_imagenet64.py --workdir=runs/edm_imagenet64 \\
      --config.data.data_dir=/path/to/tensorflow_datasets

- gmm2d: the 2-D Gaussian mixture, an MLP of 4 blocks of width 256.
- digits: the default CPU run, class-conditional, label dropout 0.1. Samples:
  runs/edm_digits/samples/step_*.png (column i = digit i).
- cifar: class-conditional (EDM Table 7, "cond. VP" column with the DDPM++ network),
  accelerator scale. 200 Mimg at batch 512 = 390,625 steps; lr 1e-3 ramped over 10 Mimg; EMA
  half-life 0.5 Mimg (decay 0.5 ** (512 / 5e5) per step); dropout 0.13. EDM's non-leaking
  augmentation is not used.
- imagenet64: class-conditional with the ADM network (EDM Table 7, ImageNet-64 column): batch
  4096, lr 2e-4 ramped over 10 Mimg, EMA half-life 50 Mimg, dropout 0.10, 2500 Mimg = 610,352
  steps. The config of EDM's ``edm-imagenet-64x64-cond-adm.pkl`` (``--mode=eval`` of an
  imported teacher). Differences: fp32 (EDM trains it in fp16), no augmentation (as EDM).

The in-loop evaluation is the Heun sampler at ``sample.num_steps`` (18 steps = 35 NFE; 40 = 79
NFE for ImageNet-64, the step count of EDM's deterministic ImageNet-64 results).
"""

from fastgen.configs import data_presets

DATA_SETS = ('gmm2d', 'digits', 'cifar', 'imagenet64')


def get_config(arg: str = 'digits'):
  data, _ = data_presets.parse_arg(arg, 'edm', DATA_SETS)
  config = data_presets.start(data)
  if data == 'gmm2d':
    config.objective.update(name='edm', p_mean=-0.4, p_std=1.4)
  else:
    config.objective.update(name='edm', p_mean=-1.2, p_std=1.2,
                            label_dropout=0.1 if data == 'digits' else 0.0)
  heun_steps = 40 if data == 'imagenet64' else 18
  config.sample.num_steps = heun_steps
  config.eval.update(steps=(heun_steps,), teacher_steps=0)
  if data == 'gmm2d':
    config.network.update(hidden=256, depth=4)
    config.optim.update(lr=2e-3, warmup_steps=200)
    config.train.update(num_steps=4000, sample_every=2000, ema_decay=0.999)
  elif data == 'digits':
    config.optim.update(lr=2e-3, warmup_steps=500, grad_clip=1.0)
    config.train.update(num_steps=3000, log_every=100, checkpoint_every=500, ema_decay=0.999)
    config.eval.every = 1500
  elif data == 'cifar':
    config.optim.update(lr=1e-3, warmup_steps=19_531, grad_clip=0.0)
    config.train.update(num_steps=390_625, ema_decay=0.5 ** (512 / 5e5))
    config.eval.every = 50_000
  else:
    config.optim.update(lr=2e-4, warmup_steps=2441, grad_clip=0.0)
    config.train.update(num_steps=610_352, ema_decay=0.5 ** (4096 / 5e7))
    config.eval.every = 50_000
  return config
