"""2-rectified flow (2-RF++ options) on the digits EDM teacher's ODE couplings (CPU).

  python -m fastgen.main --config=configs/edm_digits.py --workdir=runs/edm_digits   # teacher
  python -m fastgen.main --config=configs/reflow_digits.py --workdir=runs/reflow_digits

The teacher is an EDM denoiser: its ODE is solved in sigma (Heun, 18 steps = 35 NFE, from
sigma_max z) for 10,240 noise draws and labels, kept in <workdir>/couplings (resumable; ~3 min on
2 cores), and the student, edm_digits' own network initialised from the teacher, is trained as a
velocity model through the noise-language conversion v = (x_t - D(x_t / (1 - t), t / (1 - t))) / t
(2-RF++'s initialisation from the pretrained model). U-shaped time distribution, pseudo-Huber
premetric. This run is the teacher of configs/instaflow_digits.py.
"""

from configs import default, edm_digits, reflow_gmm2d


def get_config():
  config = default.get_config()
  config.data = reflow_gmm2d.couplings_data(dict(name='digits', batch_size=128, split='train'),
                                            batch_size=128, num_pairs=10240, shard_size=1024,
                                            ode_steps=18)
  config.network = edm_digits.network(dropout=0.0)
  config.teacher.update(kind='checkpoint', workdir='runs/edm_digits')
  config.objective.update(name='reflow', time_distribution='u_shaped', u_shape_a=4.0,
                          premetric='pseudo_huber', couplings='dataset', init_from_teacher=True)
  config.optim.update(lr=2e-4, warmup_steps=100, grad_clip=1.0)
  config.train.update(num_steps=3000, log_every=100, checkpoint_every=500, sample_every=1000,
                      ema_decay=0.999)
  config.sample.update(num_steps=1, num_samples=10000, batch_size=1000, grid_size=100)
  config.eval = edm_digits.eval_config(steps=(1, 2, 4), every=1000)
  config.eval.update(straightness_steps=16, straightness_samples=500)
  return config
