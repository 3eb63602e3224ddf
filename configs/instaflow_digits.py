"""InstaFlow one-step distillation of the digits 2-rectified flow of configs/reflow_digits.py
(CPU).

  python -m fastgen.main --config=configs/reflow_digits.py --workdir=runs/reflow_digits
  python -m fastgen.main --config=configs/instaflow_digits.py --workdir=runs/instaflow_digits

Two runs: the teacher is the reflow run's EMA student (``teacher.kind='checkpoint'``), whose
nearly straight ODE is solved with 16 uniform Euler steps in flow time for 10,240 noise draws and
labels (<workdir>/couplings); the student starts from it and learns its one-step map.
"""

from configs import default, edm_digits, reflow_digits, reflow_gmm2d


def get_config():
  config = default.get_config()
  config.data = reflow_gmm2d.couplings_data(dict(name='digits', batch_size=128, split='train'),
                                            batch_size=128, num_pairs=10240, shard_size=1024,
                                            ode_steps=16, ode_method='flow_euler')
  config.network = reflow_digits.get_config().network
  config.teacher.update(kind='checkpoint', workdir='runs/reflow_digits')
  config.objective.update(name='instaflow', premetric='pseudo_huber', couplings='dataset',
                          init_from_teacher=True)
  config.optim.update(lr=1e-4, warmup_steps=100, grad_clip=1.0)
  config.train.update(num_steps=2000, log_every=100, checkpoint_every=500, sample_every=1000,
                      ema_decay=0.999)
  config.sample.update(num_steps=1, num_samples=10000, batch_size=1000, grid_size=100)
  config.eval = edm_digits.eval_config(steps=(1, 2, 4), every=1000)
  config.eval.update(straightness_steps=16, straightness_samples=500)
  return config
