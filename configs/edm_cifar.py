"""EDM DDPM++ teacher on CIFAR-10, class-conditional (Karras et al. 2022, Table 7, "cond. VP"
column with the DDPM++ network): accelerator scale.

  python -m fastgen.main --config=configs/edm_cifar.py --workdir=runs/edm_cifar \\
      --config.data.data_dir=/path/to/tensorflow_datasets

200 Mimg at batch 512 = 390,625 steps; lr 1e-3 ramped over 10 Mimg; EMA half-life 0.5 Mimg
(decay 0.5 ** (512 / 5e5) per step); dropout 0.13. EDM's non-leaking augmentation is not used.
"""

import ml_collections

from configs import default


def get_config():
  config = default.get_config()
  config.data.update(name='cifar10', batch_size=512, data_dir='', random_flip=True)
  config.network = ml_collections.ConfigDict(dict(
      name='unet', parameterization='edm', sigma_data=0.5, img_resolution=32, in_channels=3,
      model_channels=128, channel_mult=(2, 2, 2), num_blocks=4, attn_resolutions=(16,),
      dropout=0.13, num_classes=10))
  config.objective.update(name='edm', p_mean=-1.2, p_std=1.2, label_dropout=0.0)
  config.optim.update(lr=1e-3, warmup_steps=19_531, grad_clip=0.0)
  config.train.update(num_steps=390_625, log_every=500, checkpoint_every=5000,
                      sample_every=10_000, ema_decay=0.5 ** (512 / 5e5))
  config.sample.update(num_steps=18, num_samples=50_000, batch_size=1000, grid_size=100)
  return config
