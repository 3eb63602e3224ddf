"""Progressive distillation on CIFAR-10 from the EDM DDPM++ teacher, 8192 -> 1 steps:
accelerator scale.

  python -m fastgen.main --config=configs/pd_cifar.py --workdir=runs/pd_cifar \\
      --config.teacher.workdir=/path/to/edm_cifar_run \\
      --config.data.data_dir=/path/to/tensorflow_datasets

Salimans & Ho 2022's CIFAR-10 distillation (Appendix; official diffusion_distillation
config/cifar_distill.py): the student starts from the teacher, 8192 teacher steps -> 4096-step
student in round 0, halving to 1 step (13 rounds), 50k updates per round, batch 128, Adam lr 5e-5,
gradient clipping 1, no EMA, dropout 0, truncated-SNR weighting. Differences: the learning rate
stays constant (the paper anneals it linearly to 0 within each round), the network is the
class-conditional DDPM++ of configs/edm_cifar.py with EDM preconditioning (an x-prediction) on
EDM's time grid. ``sample.num_steps=0`` samples with the current round's step count.
"""

import ml_collections

from configs import default, edm_cifar


def get_config():
  config = default.get_config()
  config.data.update(name='cifar10', batch_size=128, data_dir='', random_flip=True)
  config.network = ml_collections.ConfigDict(dict(  # = configs/edm_cifar.py's network, dropout 0
      name='unet', parameterization='edm', sigma_data=0.5, img_resolution=32, in_channels=3,
      model_channels=128, channel_mult=(2, 2, 2), num_blocks=4, attn_resolutions=(16,),
      dropout=0.0, num_classes=10))
  config.teacher.update(kind='checkpoint', workdir='')
  config.objective.update(name='pd', initial_steps=4096, final_steps=1, steps_per_round=50_000,
                          init_from_teacher=True)
  config.optim.update(lr=5e-5, warmup_steps=0, grad_clip=1.0)
  config.train.update(num_steps=13 * 50_000, log_every=500, checkpoint_every=5000,
                      sample_every=10_000, ema_decay=0.0)
  config.sample.update(num_steps=0, num_samples=50_000, batch_size=1000, grid_size=100)
  config.eval = edm_cifar.eval_config(steps=(1, 2, 4), every=5000)
  return config
