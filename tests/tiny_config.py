"""A seconds-long EDM run on the 2-D mixture, for trainer and CLI tests."""

from fastgen.configs import default


def get_config(num_steps=60):
  config = default.get_config()
  config.data.update(name='gmm2d', batch_size=64)
  config.network.update(name='mlp', hidden=64, depth=2, sigma_data=1.0)
  config.objective.update(name='edm', p_mean=-0.4, p_std=1.4)
  config.optim.update(lr=2e-3, warmup_steps=20)
  config.train.update(num_steps=num_steps, log_every=20, checkpoint_every=20, sample_every=0)
  config.sample.update(num_steps=8, num_samples=256, batch_size=256, grid_size=256)
  return config
