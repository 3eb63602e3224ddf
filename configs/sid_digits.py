"""SiD one-step generator distilled from the digits EDM teacher (CPU).

  python -m fastgen.main --config=configs/edm_digits.py --workdir=runs/edm_digits   # teacher
  python -m fastgen.main --config=configs/sid_digits.py --workdir=runs/sid_digits

The student network is edm_digits' network, so generator and fake score both start from the
teacher's EMA params (SiD's initialisation). Labels are drawn uniformly; the data set only sets
the batch size and image shape. Adam with beta1 = 0 as in the official SiD code; the learning
rate is 10x the paper's CIFAR-10 value, for a CPU budget of a few thousand steps. A SiD step costs
several EDM steps (two generator passes, fake score, teacher); these settings have only been
smoke-tested (20 steps from a 20-step teacher), not tuned against the full teacher.
Samples: runs/sid_digits/samples/step_*.png (column i = digit i).
"""

from configs import default, edm_digits


def get_config():
  config = default.get_config()
  config.data.update(name='digits', batch_size=128, split='train')
  config.network = edm_digits.network(dropout=0.1)
  config.teacher.update(kind='checkpoint', workdir='runs/edm_digits')
  config.objective.update(name='sid', alpha=1.2, sigma_init=2.5, tmax=800, p_mean=-1.2,
                          p_std=1.2, init_from_teacher=True)
  config.optim.update(lr=1e-4, warmup_steps=0, b1=0.0, b2=0.999, eps=1e-8, grad_clip=0.0)
  config.train.update(num_steps=4000, log_every=200, checkpoint_every=1000, sample_every=1000,
                      ema_decay=0.999)
  config.sample.update(num_steps=1, num_samples=10000, batch_size=1000, grid_size=100)
  config.eval = edm_digits.eval_config(steps=(1, 2, 4), every=1000)
  return config
