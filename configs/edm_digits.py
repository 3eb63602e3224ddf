"""EDM teacher on sklearn's 8x8 digits, class-conditional: the default CPU run (~10 minutes).

  python -m fastgen.main --config=configs/edm_digits.py --workdir=runs/edm_digits

Samples: runs/edm_digits/samples/step_*.png (row i = digit i mod 10).
"""

import ml_collections

from configs import default


def get_config():
  config = default.get_config()
  config.data.update(name='digits', batch_size=128, split='train')
  config.network = ml_collections.ConfigDict(dict(
      name='unet', parameterization='edm', sigma_data=0.5, img_resolution=8, in_channels=1,
      model_channels=32, channel_mult=(1, 2, 2), num_blocks=2, attn_resolutions=(4,),
      dropout=0.1, num_classes=10))
  config.objective.update(name='edm', p_mean=-1.2, p_std=1.2, label_dropout=0.1)
  config.optim.update(lr=2e-3, warmup_steps=500, grad_clip=1.0)
  config.train.update(num_steps=8000, log_every=200, checkpoint_every=1000, sample_every=2000,
                      ema_decay=0.999)
  config.sample.update(num_steps=18, num_samples=10000, batch_size=1000, grid_size=100)
  return config
