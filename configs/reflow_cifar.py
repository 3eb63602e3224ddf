"""2-rectified flow with 2-RF++'s options on CIFAR-10: accelerator scale.

  python -m fastgen.main --config=configs/flow_cifar.py --workdir=runs/flow_cifar   # teacher
  python -m fastgen.main --config=configs/reflow_cifar.py --workdir=runs/reflow_cifar \\
      --config.teacher.workdir=runs/flow_cifar --config.data.data_dir=/path/to/tfds

The teacher is any fastgen CIFAR-10 workdir of the student's architecture (configs/flow_cifar.py,
or configs/edm_cifar.py with ``network.parameterization='edm'``). Settings of Lee et al. 2024
(2-RF++, CIFAR-10): U-shaped timesteps (a = 4), initialisation from the teacher, Adam lr 2e-5 (the
official script's ``--learning_rate``), EMA 0.9999, batch 512. Differences: pseudo-Huber instead of
LPIPS-Huber (no VGG weights), 200k couplings solved once with Heun 18 (35 NFE) instead of the
paper's 4M pairs, kept as float32 (4.9 GB in <workdir>/couplings, read into host memory).
The data set (``data.source``) gives shapes and the FID reference.
"""

from configs import default, edm_cifar, flow_cifar, reflow_gmm2d


def get_config():
  config = default.get_config()
  source = dict(name='cifar10', batch_size=512, data_dir='', random_flip=False)
  config.data = reflow_gmm2d.couplings_data(source, batch_size=512, num_pairs=200_000,
                                            shard_size=10_000, ode_steps=18)
  config.network = flow_cifar.get_config().network
  config.network.dropout = 0.0
  config.teacher.update(kind='checkpoint', workdir='')
  config.objective.update(name='reflow', time_distribution='u_shaped', u_shape_a=4.0,
                          premetric='pseudo_huber', couplings='dataset', init_from_teacher=True)
  config.optim.update(lr=2e-5, warmup_steps=0, grad_clip=0.0)
  config.train.update(num_steps=200_000, log_every=500, checkpoint_every=5000,
                      sample_every=10_000, ema_decay=0.9999)
  config.sample.update(num_steps=1, num_samples=50_000, batch_size=1000, grid_size=100)
  config.eval = edm_cifar.eval_config(steps=(1, 2, 4), every=10_000, teacher_steps=0)
  config.eval.update(straightness_steps=32, straightness_samples=500)
  return config
