"""EDM teacher on sklearn's 8x8 digits, class-conditional: the default CPU run (~15 minutes).

  python -m fastgen.main --config=configs/edm_digits.py --workdir=runs/edm_digits

Samples: runs/edm_digits/samples/step_*.png (column i = digit i).
"""

import ml_collections

from configs import default


def network(dropout: float = 0.1) -> ml_collections.ConfigDict:
  """The digits UNet (441k params, ~0.25 s per batch-128 step on 2 CPU cores); every digits
  distillation config uses it so that students start from this teacher's weights."""
  return ml_collections.ConfigDict(dict(
      name='unet', parameterization='edm', sigma_data=0.5, img_resolution=8, in_channels=1,
      model_channels=16, channel_mult=(1, 2, 2), num_blocks=2, attn_resolutions=(4,),
      dropout=dropout, num_classes=10))


def eval_config(steps, every: int, teacher_steps: int = 18) -> ml_collections.ConfigDict:
  """FID in the shipped digits classifier's features against the digits training split."""
  return ml_collections.ConfigDict(dict(
      every=every, features='digits', num_samples=2000, batch_size=500, steps=tuple(steps),
      teacher_steps=teacher_steps, reference='', reference_num_samples=0, inception_weights='',
      num_projections=512, seed=0))


def get_config():
  config = default.get_config()
  config.data.update(name='digits', batch_size=128, split='train')
  config.network = network()
  config.objective.update(name='edm', p_mean=-1.2, p_std=1.2, label_dropout=0.1)
  config.optim.update(lr=2e-3, warmup_steps=500, grad_clip=1.0)
  config.train.update(num_steps=3000, log_every=100, checkpoint_every=500, sample_every=1000,
                      ema_decay=0.999)
  config.eval = eval_config(steps=(18,), every=1500, teacher_steps=0)  # Heun 18 = 35 NFE
  config.sample.update(num_steps=18, num_samples=10000, batch_size=1000, grid_size=100)
  return config
