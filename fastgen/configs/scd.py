"""sCD, continuous-time consistency distillation (Lu & Song 2024, "Simplifying, Stabilizing and
Scaling Continuous-Time Consistency Models"), in TrigFlow.

  python -m fastgen.main --config=configs/scd_gmm2d.py --workdir=runs/scd_gmm2d   # CPU

- gmm2d: the paper's recipe with dx_t/dt the closed-form mixture teacher's PF-ODE velocity,
  through the exact EDM -> TrigFlow conversion of fastgen/trigflow.py: tau ~ N(-1.0, 1.4^2),
  tangent normalization c = 0.1, learned adaptive weighting, tangent warm-up over 500 steps. The
  teacher is the exact denoiser of the gmm2d distribution, so the student starts from a fresh
  init. 1-step sampling from t_max = arctan(80 / sigma_d), 2-step through t = 1.1.
"""

from fastgen.configs import data_presets

DATA_SETS = ('gmm2d',)


def get_config(arg: str = 'gmm2d'):
  data, _ = data_presets.parse_arg(arg, 'scd', DATA_SETS)
  config = data_presets.start(data)
  config.teacher.update(data_presets.EDM_TEACHERS[data])
  config.objective.update(name='scd', p_mean=-1.0, p_std=1.4, warmup_steps=500,
                          normalization=0.1, intermediate_times=(1.1,), init_from_teacher=False)
  config.optim.update(lr=1e-3, warmup_steps=100, grad_clip=1.0)
  config.train.update(num_steps=3000, ema_decay=0.99)
  config.eval.steps = (1, 2)
  return config
