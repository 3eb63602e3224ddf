"""DMD2 one-step generator for the closed-form 2-D mixture teacher (CPU, a few minutes).

  python -m fastgen.main --config=configs/dmd2_gmm2d.py --workdir=runs/dmd2_gmm2d

DMD2 (Yin et al. 2024b): distribution matching without the regression loss, two time-scale
updates (the fake score takes ``fake_score_updates_per_generator_update`` = 5 steps per generator
step, the paper's ratio) and a GAN classifier head on the fake score's trunk features, trained
against real data, the gmm2d data set (``batch['x']``), with DMD2's ImageNet-64 weights (3e-3
generator, 1e-2 classifier). Fresh networks (the teacher is closed-form), Adam with beta1 = 0.
"""

from configs import default, edm_gmm2d


def get_config():
  config = default.get_config()
  config.data.update(name='gmm2d', batch_size=512)
  config.network.update(name='mlp', hidden=128, depth=3, sigma_data=1.0)
  config.teacher.update(kind='analytic', mixture='gmm2d')
  config.objective.update(name='dmd', sigma_gen=80.0, gan_generator_weight=3e-3,
                          gan_discriminator_weight=1e-2, fake_score_updates_per_generator_update=5,
                          p_mean=-0.4, p_std=1.4, init_from_teacher=False)
  config.optim.update(lr=1e-4, warmup_steps=100, b1=0.0, b2=0.999, eps=1e-8, grad_clip=1.0)
  config.train.update(num_steps=5000, log_every=200, checkpoint_every=2500, sample_every=2500,
                      ema_decay=0.99)
  config.sample.update(num_steps=1, num_samples=10000, batch_size=10000, grid_size=5000)
  config.eval = edm_gmm2d.eval_config(steps=(1, 2, 4), every=1000)
  return config
