"""DMD2 one-step generators (Yin et al. 2024b, "Improved Distribution Matching Distillation"):
distribution matching without the regression loss, two time-scale updates and a GAN classifier
head on the fake score, trained against real data.

  python -m fastgen.main --config=configs/dmd2_gmm2d.py --workdir=runs/dmd2_gmm2d  # CPU, minutes
  python -m fastgen.main --config=configs/edm_digits.py --workdir=runs/edm_digits   # teacher
  python -m fastgen.main --config=configs/dmd2_digits.py --workdir=runs/dmd2_digits
  python -m fastgen.main --config=configs/dmd2_cifar.py --workdir=runs/dmd2_cifar \\
      --config.teacher.workdir=/path/to/edm_cifar10_cond_converted \\
      --config.data.data_dir=/path/to/tensorflow_datasets

The weights of DMD2's ImageNet-64 EDM script (github.com/tianweiy/DMD2,
``experiments/imagenet/imagenet_gan_classifier_genloss3e-3_diffusion1000_lr2e-6_scratch.sh`` and
``main/edm/train_edm.py``): no regression loss, the fake score updated 5 times per generator
update (``fake_score_updates_per_generator_update``, the paper's ratio), GAN classifier weight
1e-2 on the fake score's bottleneck (trunk features), generator GAN weight 3e-3, generator input
sigma 80. The real data for the classifier is the data set (``batch['x']``).

- gmm2d: fresh networks (the teacher is closed-form), Adam with beta1 = 0.
- digits: generator and fake score start from the teacher (edm_digits' network); Adam with
  beta1 = 0 and lr 1e-4 for a CPU budget of a few thousand steps (the script: AdamW (0.9,
  0.999), weight decay 0.01, lr 2e-6), gradient-norm clipping at 10. As dmd_digits, the fake
  score and classifier at EDM's log-normal noise levels, not the official grid (configs/dmd.py's
  digits item has the measurement). EMA decay 0.99: the generator's EMA moves only at its
  updates (1 step in 5), so 0.99 spans 100 of the run's 1000; at 0.998 the final 1-step FID of
  the EMA was 7.5 against 2.0 for the trained weights (docs/results.md).
- cifar: class-conditional, from the EDM DDPM++ cond. VP teacher, accelerator scale. DMD2
  reports ImageNet-64, not CIFAR-10; these are the settings of its ImageNet-64 script: generator
  and fake score from the teacher, lr 2e-6 for both, AdamW betas (0.9, 0.999) and weight decay
  0.01, gradient-norm clipping at 10, batch 280 (7 x 40). Real images for the classifier: the
  CIFAR-10 training set; dropout 0, as DMD2's EDM networks (``main/edm/edm_network.py``).
  Differences: the classifier head is two dense layers on the flattened 8x8 bottleneck, not
  DMD2's strided convs.
"""

from fastgen.configs import data_presets, dmd

DATA_SETS = ('gmm2d', 'digits', 'cifar')


def get_config(arg: str = 'gmm2d'):
  data, _ = data_presets.parse_arg(arg, 'dmd2', DATA_SETS)
  config = dmd.distribution_matching(data)
  config.objective.update(gan_generator_weight=3e-3, gan_discriminator_weight=1e-2,
                          fake_score_updates_per_generator_update=5)
  if data == 'gmm2d':
    config.train.update(num_steps=5000, checkpoint_every=2500, sample_every=2500,
                        ema_decay=0.99)
  elif data == 'digits':
    # EMA horizon 100 generator updates, a tenth of the run's (its EMA moves only with them).
    config.train.update(num_steps=5000, ema_decay=0.99)
    config.objective.fake_score_sigma = 'lognormal'  # why: dmd.py's digits item
  else:
    config.data.batch_size = 280
    config.network.dropout = 0.0
  return config
