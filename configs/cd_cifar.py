"""Consistency distillation on CIFAR-10 from the EDM DDPM++ teacher: accelerator scale.

  python -m fastgen.main --config=configs/cd_cifar.py --workdir=runs/cd_cifar \\
      --config.teacher.workdir=/path/to/edm_cifar_run \\
      --config.data.data_dir=/path/to/tensorflow_datasets

``teacher.workdir`` is a fastgen workdir of configs/edm_cifar.py (or a converted EDM checkpoint);
the student has its network and starts from its EMA params. Song et al. 2023, Table 3, CIFAR-10
CD column (and the official configs/cifar10_ve_cd.py): N = 18, Heun, mu = 0 (target =
stop-gradient(student)), batch 512, lr 4e-4 warmed up over 10 Mimg, no gradient clipping, EMA
0.9999, 800k iterations, dropout 0. Differences: squared L2 metric (the paper's CD-L2 rows; LPIPS
is not available), Adam instead of RAdam, the class-conditional DDPM++ teacher of
configs/edm_cifar.py instead of the unconditional NCSN++ EDM model.
"""

import ml_collections

from configs import default, edm_cifar


def get_config():
  config = default.get_config()
  config.data.update(name='cifar10', batch_size=512, data_dir='', random_flip=True)
  config.network = ml_collections.ConfigDict(dict(  # = configs/edm_cifar.py's network, dropout 0
      name='unet', parameterization='edm', sigma_data=0.5, img_resolution=32, in_channels=3,
      model_channels=128, channel_mult=(2, 2, 2), num_blocks=4, attn_resolutions=(16,),
      dropout=0.0, num_classes=10))
  config.teacher.update(kind='checkpoint', workdir='')
  config.objective.update(name='cd', num_scales=18, solver='heun', target_ema=0.0, metric='l2',
                          init_from_teacher=True)
  config.optim.update(lr=4e-4, warmup_steps=19_531, grad_clip=0.0)
  config.train.update(num_steps=800_000, log_every=500, checkpoint_every=5000,
                      sample_every=10_000, ema_decay=0.9999)
  config.sample.update(num_steps=1, num_samples=50_000, batch_size=1000, grid_size=100)
  config.eval = edm_cifar.eval_config(steps=(1, 2, 4), every=5000)
  return config
