"""DMD2 one-step generator distilled from the digits EDM teacher (CPU).

  python -m fastgen.main --config=configs/edm_digits.py --workdir=runs/edm_digits   # teacher
  python -m fastgen.main --config=configs/dmd2_digits.py --workdir=runs/dmd2_digits

DMD2 (Yin et al. 2024b) with the weights of its ImageNet-64 script
(``experiments/imagenet/imagenet_gan_classifier_genloss3e-3_diffusion1000_lr2e-6_scratch.sh``):
no regression loss, the fake score updated 5 times per generator update, GAN classifier weight
1e-2 and generator GAN weight 3e-3, gradient-norm clipping at 10. Real data for the classifier:
the digits training split. Generator and fake score start from the teacher (edm_digits'
network); Adam with beta1 = 0 and lr 1e-4 for a CPU budget of a few thousand steps (the script:
AdamW (0.9, 0.999), weight decay 0.01, lr 2e-6). Only smoke-tested.
"""

from configs import default, edm_digits


def get_config():
  config = default.get_config()
  config.data.update(name='digits', batch_size=128, split='train')
  config.network = edm_digits.network(dropout=0.1)
  config.teacher.update(kind='checkpoint', workdir='runs/edm_digits')
  config.objective.update(name='dmd', sigma_gen=80.0, gan_generator_weight=3e-3,
                          gan_discriminator_weight=1e-2, fake_score_updates_per_generator_update=5,
                          p_mean=-1.2, p_std=1.2, init_from_teacher=True)
  config.optim.update(lr=1e-4, warmup_steps=0, b1=0.0, b2=0.999, eps=1e-8, grad_clip=10.0)
  config.train.update(num_steps=5000, log_every=200, checkpoint_every=1000, sample_every=1000,
                      ema_decay=0.999)
  config.sample.update(num_steps=1, num_samples=10000, batch_size=1000, grid_size=100)
  config.eval = edm_digits.eval_config(steps=(1, 2, 4), every=1000)
  return config
