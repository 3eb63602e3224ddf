"""SiDA on CIFAR-10, class-conditional, from the EDM DDPM++ cond. VP teacher: accelerator scale.

  python -m fastgen.main --config=configs/sida_cifar.py --workdir=runs/sida_cifar \\
      --config.teacher.workdir=/path/to/edm_cifar10_cond_converted \\
      --config.data.data_dir=/path/to/tensorflow_datasets

SiDA (Zhou et al. 2025, "Adversarial Score identity Distillation"): configs/sid_cifar.py plus the
adversarial option of the SiD objective, with the official script's CIFAR-10 loss scales
(``--ls 1 --lsg 100 --lsd 1 --lsg_gan 0.01``, github.com/mingyuanzhou/SiD, branch sida), i.e.
lambda_D = lsd / ls = 1 and lambda_G = lsg_gan / lsg = 1e-4 in fastgen's units (see
fastgen/objectives/sid.py), lr 1e-5 for both networks, 300 Mimg (``--duration 300``) at batch
256. Real images for the discriminator: the CIFAR-10 training set (it must be on disk).
Differences from the official code: no warm-up of the GAN term, no SiD-initialised generator
(SiD^2A), and those of configs/sid_cifar.py.
"""

from configs import sid_cifar


def get_config():
  config = sid_cifar.get_config()
  config.objective.update(gan_generator_weight=1e-4, gan_discriminator_weight=1.0)
  config.train.update(num_steps=1_171_875)  # 300 Mimg / 256
  return config
