"""DMD on CIFAR-10, class-conditional, from the EDM DDPM++ cond. VP teacher: accelerator scale.

  python -m fastgen.main --config=configs/dmd_cifar.py --workdir=runs/dmd_cifar \\
      --config.teacher.workdir=/path/to/edm_cifar10_cond_converted \\
      --config.data.source.data_dir=/path/to/tensorflow_datasets

DMD (Yin et al. 2024a, CIFAR-10 cond. FID 2.66): distribution matching plus lambda_reg = 0.25
(the paper's weight) times the regression loss on noise -> teacher-sample pairs, squared L2 in
place of the paper's LPIPS. On first use the trainer solves the teacher's ODE (Heun, 18 steps =
35 evaluations, from sigma_max = 80) for ``data.num_pairs`` noises and writes them to
``<workdir>/couplings``; the paper builds its CIFAR-10 pair set with EDM's sampler too. Generator
and fake score start from the teacher; generator input sigma 80. The optimizer settings are those
DMD2's code uses for its DMD baseline (AdamW (0.9, 0.999), weight decay 0.01, lr 2e-6, clipping
at 10); the DMD paper's exact CIFAR-10 optimizer settings are not restated here.
"""

import ml_collections

from configs import default, edm_cifar, sid_cifar


def get_config():
  config = default.get_config()
  config.data = ml_collections.ConfigDict(dict(
      name='couplings', batch_size=256, directory='',
      source=dict(name='cifar10', batch_size=256, data_dir='', random_flip=False),
      num_pairs=102_400, shard_size=1024, ode_steps=18, ode_method='heun', coupling_seed=0))
  config.network = sid_cifar.get_config().network  # = configs/edm_cifar.py's network
  config.teacher.update(kind='checkpoint', workdir='')
  config.objective.update(name='dmd', sigma_gen=80.0, regression_weight=0.25, p_mean=-1.2,
                          p_std=1.2, init_from_teacher=True)
  config.optim.update(lr=2e-6, warmup_steps=0, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01,
                      grad_clip=10.0)
  config.train.update(num_steps=400_000, log_every=500, checkpoint_every=5000,
                      sample_every=10_000, ema_decay=0.999, skip_nonfinite=True)
  config.sample.update(num_steps=1, num_samples=50_000, batch_size=1000, grid_size=100)
  config.eval = edm_cifar.eval_config(steps=(1, 2, 4), every=5000)
  return config
