"""SiD on CIFAR-10, class-conditional, from the EDM DDPM++ cond. VP teacher: accelerator scale.

  python -m fastgen.main --config=configs/sid_cifar.py --workdir=runs/sid_cifar \\
      --config.teacher.workdir=/path/to/edm_cifar10_cond_converted \\
      --config.data.data_dir=/path/to/tensorflow_datasets

``teacher.workdir`` is a fastgen workdir holding the teacher (EDM's edm-cifar10-32x32-cond-vp
converted to fastgen's format, or a run of configs/edm_cifar.py). Settings of the official code's
``run_sid.sh cifar10-cond`` (Zhou et al. 2024, github.com/mingyuanzhou/SiD): alpha 1.2,
sigma_init 2.5, tmax 800, batch 256, Adam lr 1e-5 for both networks with betas (0, 0.999) and
eps 1e-8, no warm-up or clipping, EMA half-life 0.5 Mimg, dropout 0.13, fp32 (``--fp16 0``;
``network.dtype='bfloat16'`` is untested with SiD), 100 Mimg = 390,625 steps (the script's
``--duration 100``; the paper's best checkpoints trained longer). Differences: no EMA ramp-up, no
augmentation of the fake-score loss (the script's default ``--augment 0.12``), and a non-finite
step is skipped where the official code zeroes non-finite gradient entries. The data set only sets
shapes; it must be on disk.
"""

import ml_collections

from configs import default, edm_cifar


def get_config():
  config = default.get_config()
  config.data.update(name='cifar10', batch_size=256, data_dir='', random_flip=False)
  config.network = ml_collections.ConfigDict(dict(  # = configs/edm_cifar.py's network
      name='unet', parameterization='edm', sigma_data=0.5, img_resolution=32, in_channels=3,
      model_channels=128, channel_mult=(2, 2, 2), num_blocks=4, attn_resolutions=(16,),
      dropout=0.13, num_classes=10))
  config.teacher.update(kind='checkpoint', workdir='')
  config.objective.update(name='sid', alpha=1.2, sigma_init=2.5, tmax=800, p_mean=-1.2,
                          p_std=1.2, init_from_teacher=True)
  config.optim.update(lr=1e-5, warmup_steps=0, b1=0.0, b2=0.999, eps=1e-8, weight_decay=0.0,
                      grad_clip=0.0)
  config.train.update(num_steps=390_625, log_every=500, checkpoint_every=5000,
                      sample_every=10_000, ema_decay=0.5 ** (256 / 5e5), skip_nonfinite=True)
  config.sample.update(num_steps=1, num_samples=50_000, batch_size=1000, grid_size=100)
  config.eval = edm_cifar.eval_config(steps=(1, 2, 4), every=5000)
  return config
