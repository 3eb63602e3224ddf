"""SiDA one-step generator for the closed-form 2-D mixture teacher (CPU, a few minutes).

  python -m fastgen.main --config=configs/sida_gmm2d.py --workdir=runs/sida_gmm2d

configs/sid_gmm2d.py plus SiD's adversarial option (Zhou et al. 2025) with the official CIFAR-10
loss scales (lambda_D = 1, lambda_G = 1e-4; fastgen/objectives/sid.py): the fake score's trunk
features, averaged, discriminate the gmm2d data set (``batch['x']``) from generator samples.
With D = 2 dimensions the generator's GAN term is small beside the SiD loss.
"""

from configs import sid_gmm2d


def get_config():
  config = sid_gmm2d.get_config()
  config.objective.update(gan_generator_weight=1e-4, gan_discriminator_weight=1.0)
  return config
