"""InstaFlow one-step distillation of the CIFAR-10 2-rectified flow: accelerator scale.

  python -m fastgen.main --config=configs/instaflow_cifar.py --workdir=runs/instaflow_cifar \\
      --config.teacher.workdir=runs/reflow_cifar --config.data.data_dir=/path/to/tfds

The teacher is a configs/reflow_cifar.py workdir; its ODE is solved with 32 uniform Euler steps
in flow time for 200k noise draws; the student starts from it. pseudo-Huber instead of the paper's
LPIPS (no VGG weights).
"""

from configs import default, edm_cifar, reflow_cifar, reflow_gmm2d


def get_config():
  config = default.get_config()
  source = dict(name='cifar10', batch_size=512, data_dir='', random_flip=False)
  config.data = reflow_gmm2d.couplings_data(source, batch_size=512, num_pairs=200_000,
                                            shard_size=10_000, ode_steps=32,
                                            ode_method='flow_euler')
  config.network = reflow_cifar.get_config().network
  config.teacher.update(kind='checkpoint', workdir='')
  config.objective.update(name='instaflow', premetric='pseudo_huber', couplings='dataset',
                          init_from_teacher=True)
  config.optim.update(lr=1e-5, warmup_steps=0, grad_clip=0.0)
  config.train.update(num_steps=100_000, log_every=500, checkpoint_every=5000,
                      sample_every=10_000, ema_decay=0.9999)
  config.sample.update(num_steps=1, num_samples=50_000, batch_size=1000, grid_size=100)
  config.eval = edm_cifar.eval_config(steps=(1, 2, 4), every=10_000, teacher_steps=0)
  config.eval.update(straightness_steps=32, straightness_samples=500)
  return config
