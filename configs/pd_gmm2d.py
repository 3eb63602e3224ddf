"""Progressive distillation of the closed-form 2-D mixture teacher, 64 -> 1 steps (CPU, about 2
minutes).

  python -m fastgen.main --config=configs/pd_gmm2d.py --workdir=runs/pd_gmm2d

Round 0 distils the exact teacher's 64-step DDIM sampler into a fresh 32-step student (the
teacher is a closed-form mixture, so ``init_from_teacher=False``); rounds 1-5 halve to 16, 8, 4,
2, 1 steps, ``steps_per_round`` training steps each. The students can only be as good as the
sampler they distil: the teacher's DDIM has exact FD 0.0071 at 16 steps, 0.0016 at 32 and 0.0004
at 64 (its Heun 35-NFE ODE: 0.0015), hence 64 teacher steps rather than 16.
``sample.num_steps=0`` samples with the current round's step count.
"""

from configs import default, edm_gmm2d


def get_config():
  config = default.get_config()
  config.data.update(name='gmm2d', batch_size=512)
  config.network.update(name='mlp', hidden=128, depth=3, sigma_data=1.0)
  config.teacher.update(kind='analytic', mixture='gmm2d')
  config.objective.update(name='pd', initial_steps=32, final_steps=1, steps_per_round=750,
                          init_from_teacher=False)
  config.optim.update(lr=5e-4, warmup_steps=100, grad_clip=1.0)
  config.train.update(num_steps=4500, log_every=250, checkpoint_every=750, sample_every=750,
                      ema_decay=0.0)
  config.sample.update(num_steps=0, num_samples=10000, batch_size=10000, grid_size=5000)
  config.eval = edm_gmm2d.eval_config(steps=(1, 2, 4), every=750)  # once per round
  return config
