"""SiDA one-step generators (Zhou et al. 2025, "Adversarial Score identity Distillation"): the
``sid`` configs plus the adversarial option of the SiD objective.

  python -m fastgen.main --config=configs/sida_gmm2d.py --workdir=runs/sida_gmm2d  # CPU, minutes
  python -m fastgen.main --config=configs/sida_cifar.py --workdir=runs/sida_cifar \\
      --config.teacher.workdir=/path/to/edm_cifar10_cond_converted \\
      --config.data.data_dir=/path/to/tensorflow_datasets

The official script's CIFAR-10 loss scales (``--ls 1 --lsg 100 --lsd 1 --lsg_gan 0.01``,
github.com/mingyuanzhou/SiD, branch sida), i.e. lambda_D = lsd / ls = 1 and lambda_G =
lsg_gan / lsg = 1e-4 in fastgen's units (see fastgen/objectives/sid.py); the fake score's trunk
features, averaged, discriminate real data (``batch['x']``) from generator samples.

- gmm2d: the real data is the gmm2d data set. With D = 2 dimensions the generator's GAN term is
  small beside the SiD loss.
- digits: sid_digits' settings (from runs/edm_digits, 4000 steps); the real data are the digits
  training split.
- cifar: lr 1e-5 for both networks, 300 Mimg (``--duration 300``) at batch 256. Real images for
  the discriminator: the CIFAR-10 training set (it must be on disk). Differences from the
  official code: no warm-up of the GAN term, no SiD-initialised generator (SiD^2A), and those of
  the sid_cifar config.
"""

from fastgen.configs import data_presets, sid

DATA_SETS = ('gmm2d', 'digits', 'cifar')


def get_config(arg: str = 'gmm2d'):
  data, _ = data_presets.parse_arg(arg, 'sida', DATA_SETS)
  config = sid.get_config(data)
  config.objective.update(gan_generator_weight=1e-4, gan_discriminator_weight=1.0)
  if data == 'cifar':
    config.train.num_steps = 1_171_875  # 300 Mimg / 256
  return config
