"""DMD2 on CIFAR-10, class-conditional, from the EDM DDPM++ cond. VP teacher: accelerator scale.

  python -m fastgen.main --config=configs/dmd2_cifar.py --workdir=runs/dmd2_cifar \\
      --config.teacher.workdir=/path/to/edm_cifar10_cond_converted \\
      --config.data.data_dir=/path/to/tensorflow_datasets

DMD2 (Yin et al. 2024b) reports ImageNet-64, not CIFAR-10; these are the settings of its
ImageNet-64 EDM script (github.com/tianweiy/DMD2, ``experiments/imagenet/imagenet_gan_classifier_
genloss3e-3_diffusion1000_lr2e-6_scratch.sh`` and ``main/edm/train_edm.py``): generator and fake
score from the teacher, generator input sigma 80, lr 2e-6 for both, AdamW betas (0.9, 0.999) and
weight decay 0.01, gradient-norm clipping at 10, the fake score updated 5 times per generator
update, GAN classifier weight 1e-2 on the fake score's bottleneck, generator GAN weight 3e-3,
batch 280 (7 x 40). Real images for the classifier: the CIFAR-10 training set. Differences: the
classifier head is two dense layers on the flattened 8x8 bottleneck, not DMD2's strided convs,
and the fake score's noise levels are EDM's log-normal, not uniform on the Karras grid.
"""

from configs import default, edm_cifar, sid_cifar


def get_config():
  config = default.get_config()
  config.data.update(name='cifar10', batch_size=280, data_dir='', random_flip=True)
  config.network = sid_cifar.get_config().network  # = configs/edm_cifar.py's network
  config.teacher.update(kind='checkpoint', workdir='')
  config.objective.update(name='dmd', sigma_gen=80.0, gan_generator_weight=3e-3,
                          gan_discriminator_weight=1e-2, fake_score_updates_per_generator_update=5,
                          p_mean=-1.2, p_std=1.2, init_from_teacher=True)
  config.optim.update(lr=2e-6, warmup_steps=0, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01,
                      grad_clip=10.0)
  config.train.update(num_steps=400_000, log_every=500, checkpoint_every=5000,
                      sample_every=10_000, ema_decay=0.999, skip_nonfinite=True)
  config.sample.update(num_steps=1, num_samples=50_000, batch_size=1000, grid_size=100)
  config.eval = edm_cifar.eval_config(steps=(1, 2, 4), every=5000)
  return config
