"""2-rectified flow (2-RF++ options) on the closed-form 2-D mixture teacher's ODE couplings (CPU,
about 2 minutes).

  python -m fastgen.main --config=configs/reflow_gmm2d.py --workdir=runs/reflow_gmm2d

The first run solves the exact teacher's probability-flow ODE (Heun, 64 steps) for 65,536 noise
draws and keeps the pairs in <workdir>/couplings (resumable, reused by later runs in the same
workdir). The student is a flow-parameterized MLP from a fresh init (a closed-form teacher has no
weights to start from), trained with the U-shaped time distribution and the pseudo-Huber premetric.
The in-loop evaluation logs the exact metrics at 1, 2 and 4 Euler steps and the straightness of
the student's and the teacher's ODEs. This run is the teacher of configs/instaflow_gmm2d.py.
"""

import ml_collections

from configs import default, edm_gmm2d


def couplings_data(source: dict, batch_size: int, num_pairs: int, shard_size: int,
                   ode_steps: int, ode_method: str = 'heun') -> ml_collections.ConfigDict:
  """A ``data.name='couplings'`` section over the teacher of data set ``source``."""
  return ml_collections.ConfigDict(dict(
      name='couplings', batch_size=batch_size, source=source, num_pairs=num_pairs,
      shard_size=shard_size, ode_steps=ode_steps, ode_method=ode_method, coupling_seed=0,
      directory=''))


def get_config():
  config = default.get_config()
  config.data = couplings_data(dict(name='gmm2d', batch_size=512), batch_size=512,
                               num_pairs=65536, shard_size=8192, ode_steps=64)
  config.network.update(name='mlp', hidden=128, depth=3, parameterization='flow', sigma_data=1.0)
  config.teacher.update(kind='analytic', mixture='gmm2d')
  config.objective.update(name='reflow', time_distribution='u_shaped', u_shape_a=4.0,
                          premetric='pseudo_huber', couplings='dataset', init_from_teacher=False)
  config.optim.update(lr=1e-3, warmup_steps=100, grad_clip=1.0)
  config.train.update(num_steps=4000, log_every=200, checkpoint_every=1000, sample_every=2000,
                      ema_decay=0.995)
  config.sample.update(num_steps=1, num_samples=10000, batch_size=10000, grid_size=5000)
  config.eval = edm_gmm2d.eval_config(steps=(1, 2, 4), every=1000)
  config.eval.update(straightness_steps=32, straightness_samples=2000)
  return config
