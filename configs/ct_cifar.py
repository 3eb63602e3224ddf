"""Improved consistency training (iCT) on CIFAR-10, unconditional: accelerator scale.

  python -m fastgen.main --config=configs/ct_cifar.py --workdir=runs/ct_cifar \\
      --config.data.data_dir=/path/to/tensorflow_datasets

Song & Dhariwal 2023 (§3 and their CIFAR-10 settings): pseudo-Huber metric with
c = 0.00054 sqrt(3072), lognormal noise indices (P_mean = -1.1, P_std = 2.0), discretisation
doubling from s0 = 10 to s1 = 1280 over the 400k iterations, lambda = 1 / (sigma_{i+1} - sigma_i),
no target EMA, dropout 0.3, batch 1024, lr 1e-4, EMA 0.99993. Differences: the DDPM++ network of
configs/edm_cifar.py (unconditional) instead of NCSN++, Adam instead of RAdam, fastgen's linear
warm-up (10 Mimg, as Song et al. 2023).
"""

import ml_collections

from configs import default, edm_cifar


def get_config():
  config = default.get_config()
  config.data.update(name='cifar10', batch_size=1024, data_dir='', random_flip=True)
  config.network = ml_collections.ConfigDict(dict(  # configs/edm_cifar.py's, unconditional
      name='unet', parameterization='edm', sigma_data=0.5, img_resolution=32, in_channels=3,
      model_channels=128, channel_mult=(2, 2, 2), num_blocks=4, attn_resolutions=(16,),
      dropout=0.3, num_classes=0))
  config.teacher.update(kind='none')
  config.objective.update(name='ct', total_steps=400_000, s0=10, s1=1280, p_mean=-1.1,
                          p_std=2.0)
  config.optim.update(lr=1e-4, warmup_steps=9766, grad_clip=0.0)
  config.train.update(num_steps=400_000, log_every=500, checkpoint_every=5000,
                      sample_every=10_000, ema_decay=0.99993)
  config.sample.update(num_steps=1, num_samples=50_000, batch_size=1000, grid_size=100)
  config.eval = edm_cifar.eval_config(steps=(1, 2, 4), every=5000)
  return config
