"""Progressive distillation of the closed-form 2-D mixture teacher, 16 -> 1 steps (CPU, about a
minute).

  python -m fastgen.main --config=configs/pd_gmm2d.py --workdir=runs/pd_gmm2d

Round 0 distils the exact teacher's 16-step DDIM sampler into a fresh 8-step student (the
teacher is a closed-form mixture, so ``init_from_teacher=False``); rounds 1-3 halve to 4, 2, 1
steps, ``steps_per_round`` training steps each. ``sample.num_steps=0`` samples with the current
round's step count.
"""

from configs import default, edm_gmm2d


def get_config():
  config = default.get_config()
  config.data.update(name='gmm2d', batch_size=512)
  config.network.update(name='mlp', hidden=128, depth=3, sigma_data=1.0)
  config.teacher.update(kind='analytic', mixture='gmm2d')
  config.objective.update(name='pd', initial_steps=8, final_steps=1, steps_per_round=750,
                          init_from_teacher=False)
  config.optim.update(lr=5e-4, warmup_steps=100, grad_clip=1.0)
  config.train.update(num_steps=3000, log_every=250, checkpoint_every=750, sample_every=750,
                      ema_decay=0.0)
  config.sample.update(num_steps=0, num_samples=10000, batch_size=10000, grid_size=5000)
  config.eval = edm_gmm2d.eval_config(steps=(1, 2, 4), every=750)  # once per round
  return config
