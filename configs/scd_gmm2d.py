"""sCD, continuous-time consistency distillation of the closed-form 2-D mixture teacher (CPU).

  python -m fastgen.main --config=configs/scd_gmm2d.py --workdir=runs/scd_gmm2d

Lu & Song 2024's recipe in TrigFlow with dx_t/dt the teacher's PF-ODE velocity, through the exact
EDM -> TrigFlow conversion of fastgen/trigflow.py: tau ~ N(-1.0, 1.4^2), tangent normalization
c = 0.1, learned adaptive weighting, tangent warm-up over 500 steps. The teacher is the exact
denoiser of the gmm2d distribution, so the student starts from a fresh init.
"""

from configs import default, edm_gmm2d


def get_config():
  config = default.get_config()
  config.data.update(name='gmm2d', batch_size=512)
  config.network.update(name='mlp', hidden=128, depth=3, sigma_data=1.0)
  config.teacher.update(kind='analytic', mixture='gmm2d')
  config.objective.update(name='scd', p_mean=-1.0, p_std=1.4, warmup_steps=500,
                          normalization=0.1, intermediate_times=(1.1,), init_from_teacher=False)
  config.optim.update(lr=1e-3, warmup_steps=100, grad_clip=1.0)
  config.train.update(num_steps=3000, log_every=200, checkpoint_every=1000, sample_every=1000,
                      ema_decay=0.99)
  config.sample.update(num_steps=1, num_samples=10000, batch_size=10000, grid_size=5000)
  config.eval = edm_gmm2d.eval_config(steps=(1, 2), every=1000)
  return config
