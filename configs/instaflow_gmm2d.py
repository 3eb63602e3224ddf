"""InstaFlow one-step distillation of the 2-rectified flow of configs/reflow_gmm2d.py (CPU, about
a minute after the reflow run).

  python -m fastgen.main --config=configs/reflow_gmm2d.py --workdir=runs/reflow_gmm2d
  python -m fastgen.main --config=configs/instaflow_gmm2d.py --workdir=runs/instaflow_gmm2d

The pipeline is two runs: the teacher is the reflow run's EMA student (``teacher.kind=
'checkpoint'`` reads a reflow workdir), whose nearly straight ODE is solved with 32 uniform Euler
steps in flow time for 65,536 noise draws (kept in <workdir>/couplings); the student starts from
the teacher's weights and learns its one-step map. The evaluation's exact metrics use the gmm2d
mixture (``data.source``).
"""

from configs import default, edm_gmm2d, reflow_gmm2d


def get_config():
  config = default.get_config()
  config.data = reflow_gmm2d.couplings_data(dict(name='gmm2d', batch_size=512), batch_size=512,
                                            num_pairs=65536, shard_size=8192, ode_steps=32,
                                            ode_method='flow_euler')
  config.network = reflow_gmm2d.get_config().network
  config.teacher.update(kind='checkpoint', workdir='runs/reflow_gmm2d')
  config.objective.update(name='instaflow', premetric='pseudo_huber', couplings='dataset',
                          init_from_teacher=True)
  config.optim.update(lr=3e-4, warmup_steps=100, grad_clip=1.0)
  config.train.update(num_steps=2000, log_every=200, checkpoint_every=1000, sample_every=1000,
                      ema_decay=0.995)
  config.sample.update(num_steps=1, num_samples=10000, batch_size=10000, grid_size=5000)
  config.eval = edm_gmm2d.eval_config(steps=(1, 2, 4), every=1000)
  config.eval.update(straightness_steps=32, straightness_samples=2000)
  return config
