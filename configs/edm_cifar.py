"""EDM DDPM++ teacher on CIFAR-10, class-conditional (Karras et al. 2022, Table 7, "cond. VP"
column with the DDPM++ network): accelerator scale.

  python -m fastgen.main --config=configs/edm_cifar.py --workdir=runs/edm_cifar \\
      --config.data.data_dir=/path/to/tensorflow_datasets

200 Mimg at batch 512 = 390,625 steps; lr 1e-3 ramped over 10 Mimg; EMA half-life 0.5 Mimg
(decay 0.5 ** (512 / 5e5) per step); dropout 0.13. EDM's non-leaking augmentation is not used.
"""

import ml_collections

from configs import default


def eval_config(steps, every: int, teacher_steps: int = 18) -> ml_collections.ConfigDict:
  """In-loop FID (Inception pool3, 10k samples; papers report 50k with --mode=eval and
  --config.eval.num_samples=50000). Pass the community's reference statistics with
  --config.eval.reference=/path/to/cifar10-32x32.npz (EDM's file); '' computes them from the 50k
  training images. Inception weights: --config.eval.inception_weights or
  $FASTGEN_INCEPTION_WEIGHTS (inception-2015-12-05.pkl or pt_inception-2015-12-05-*.pth)."""
  return ml_collections.ConfigDict(dict(
      every=every, features='inception', num_samples=10_000, batch_size=500, steps=tuple(steps),
      teacher_steps=teacher_steps, reference='', reference_num_samples=50_000,
      inception_weights='', num_projections=512, seed=0))


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
  config.eval = eval_config(steps=(18,), every=50_000, teacher_steps=0)  # Heun 18 = 35 NFE
  return config
