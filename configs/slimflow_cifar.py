"""SlimFlow on CIFAR-10: a small student UNet from a large teacher's couplings, accelerator scale.

  python -m fastgen.main --config=configs/slimflow_cifar.py --workdir=runs/slimflow_cifar \\
      --config.teacher.workdir=runs/flow_cifar --config.data.data_dir=/path/to/tfds

The student follows SlimFlow's smaller CIFAR-10 nets (Zhu et al. 2024, Table 1: EDM UNets with
fewer channels and blocks): 64 base channels, multipliers (1, 2, 2), 2 blocks per level, about a
tenth of the DDPM++ teacher's 56M parameters. Annealing Reflow for 200k steps (beta(k) =
exp(-k / 50k), the official ``x0_randomness=warmup_exp_50000``-style schedule) on 200k couplings of
the teacher's Heun-18 ODE, then Flow-Guided Distillation for 100k steps. The official code's
horizontal flip of coupling pairs and LPIPS are not used.
"""

import ml_collections

from configs import default, edm_cifar, reflow_gmm2d


def get_config():
  config = default.get_config()
  source = dict(name='cifar10', batch_size=512, data_dir='', random_flip=False)
  config.data = reflow_gmm2d.couplings_data(source, batch_size=512, num_pairs=200_000,
                                            shard_size=10_000, ode_steps=18)
  config.network = ml_collections.ConfigDict(dict(
      name='unet', parameterization='flow', sigma_data=0.5, img_resolution=32, in_channels=3,
      model_channels=64, channel_mult=(1, 2, 2), num_blocks=2, attn_resolutions=(16,),
      dropout=0.0, num_classes=10))
  config.teacher.update(kind='checkpoint', workdir='')
  config.objective.update(name='slimflow', reflow_steps=200_000, annealing='exp',
                          annealing_steps=50_000, time_distribution='uniform', premetric='l2',
                          couplings='dataset', two_flow_steps=8, guidance_weight=1.0,
                          guidance_steps=1, init_from_teacher=False)
  config.optim.update(lr=2e-4, warmup_steps=5000, grad_clip=1.0)
  config.train.update(num_steps=300_000, log_every=500, checkpoint_every=5000,
                      sample_every=10_000, ema_decay=0.9999)
  config.sample.update(num_steps=1, num_samples=50_000, batch_size=1000, grid_size=100)
  config.eval = edm_cifar.eval_config(steps=(1, 2, 4), every=10_000, teacher_steps=0)
  config.eval.update(straightness_steps=32, straightness_samples=500)
  return config
