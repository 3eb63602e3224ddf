"""2-rectified flow with 2-RF++'s options (Liu et al. 2022, "Flow Straight and Fast"; Lee et al.
2024, "Improving the Training of Rectified Flows"), on the teacher's ODE couplings.

  python -m fastgen.main --config=configs/reflow_gmm2d.py --workdir=runs/reflow_gmm2d  # ~2 min
  python -m fastgen.main --config=configs/edm_digits.py --workdir=runs/edm_digits   # teacher
  python -m fastgen.main --config=configs/reflow_digits.py --workdir=runs/reflow_digits
  python -m fastgen.main --config=configs/flow_cifar.py --workdir=runs/flow_cifar   # teacher
  python -m fastgen.assets fetch lpips-vgg   # reflow_cifar's LPIPS (torch converts it once)
  python -m fastgen.main --config=configs/reflow_cifar.py --workdir=runs/reflow_cifar \\
      --config.teacher.workdir=runs/flow_cifar --config.data.data_dir=/path/to/tfds

The first run solves the teacher's probability-flow ODE (Heun in sigma from sigma_max z; 64 steps
for gmm2d, 18 = 35 NFE otherwise) for ``data.num_pairs`` noise draws (and labels) and keeps the
pairs in <workdir>/couplings (resumable, reused by later runs in the same workdir). U-shaped time
distribution (a = 4); pseudo-Huber metric, LPIPS-Huber on cifar. The in-loop evaluation logs
the student's metrics at 1, 2 and 4 Euler steps and the straightness of the student's and the
teacher's ODEs. Each run is the teacher of the instaflow config of its data set.

- gmm2d: 65,536 pairs of the exact teacher; the student is a flow-parameterized MLP from a fresh
  init (a closed-form teacher has no weights to start from).
- digits: 10,240 pairs (~3 min on 2 cores) of the EDM teacher; the student, edm_digits' own
  network initialised from the teacher, is trained as a velocity model through the
  noise-language conversion v = (x_t - D(x_t / (1 - t), t / (1 - t))) / t (2-RF++'s
  initialisation from the pretrained model). Its times end at ``objective.t_max`` = 1 - 1e-3
  (sigma = 999), not the official 1 - 1e-5 (sigma = 1e5, where the first Euler step of every
  sampler then queries a network whose teacher was trained to sigma = 80): a 1500-step run with
  the official range sampled from 1 - 1e-5 gave FID 207 / 12.1 / 3.82 at 1 / 2 / 4 steps, the
  same checkpoint sampled from 1 - 1e-3 3.30 / 2.04 / 1.75, a run trained with this t_max 3.31 /
  2.04 / 1.75 (docs/results.md, convergence study).
  Its InstaFlow run solves its couplings and takes its one step from that same time.
- cifar, accelerator scale: the teacher is any fastgen CIFAR-10 workdir of the student's
  architecture (configs/flow_cifar.py, or configs/edm_cifar.py with
  ``network.parameterization='edm'``). Settings of 2-RF++ on CIFAR-10 (the official README's
  command "Train CIFAR-10 using Config F", github.com/sangyun884/rfpp): U-shaped timesteps
  (``--a 4``), initialisation from the teacher, Adam lr 2e-4 with 5000 linear warm-up steps
  (``--learning_rate 2e-4 --warmup_steps 5000``), EMA 0.9999, batch 512, dropout 0.13 (its
  ``cifar10_ve_aug.json``), and its loss ``--loss_type lpips-huber --lpips_divt``:
  (1 - t) pseudo-Huber + LPIPS / t with piq's LPIPS (average pooling) at 224x224. The LPIPS
  weights are the fetched ones (``python -m fastgen.assets fetch lpips-vgg``) or
  ``--config.objective.lpips_weights=<.npz>``; without either, ``--config.objective.metric=
  pseudo_huber --config.objective.lpips_divide_by_t=False`` trains without VGG. Differences:
  200k steps instead of 800k, 200k couplings solved once with Heun 18 (35 NFE)
  instead of the paper's 4M pairs, kept as float32
  (4.9 GB in <workdir>/couplings, read into host memory). The data set (``data.source``) gives
  shapes and the FID reference.
"""

from fastgen.configs import data_presets

DATA_SETS = ('gmm2d', 'digits', 'cifar')

# Per data set: (coupling pairs, pairs per shard), the EDM teacher's Heun ODE steps, and the
# evaluation's straightness (Euler steps, samples).
_PAIRS = {'gmm2d': (65_536, 8192), 'digits': (10_240, 1024), 'cifar': (200_000, 10_000)}
EDM_TEACHER_ODE_STEPS = {'gmm2d': 64, 'digits': 18, 'cifar': 18}
_STRAIGHTNESS = {'gmm2d': (32, 2000), 'digits': (16, 500), 'cifar': (32, 500)}
# Where an EDM-parameterized (noise-language) student's flow times end; flow networks keep the
# official 1 - 1e-5.
EDM_STUDENT_T_MAX = 1.0 - 1e-3


def on_couplings(data: str, ode_steps: int, ode_method: str = 'heun'):
  """The data preset on its teacher's ODE couplings, with the straightness evaluation of the
  rectified-flow rules (reflow, instaflow, slimflow); cifar's pairs are not flipped and its FID
  runs every 10k steps, without a teacher row."""
  config = data_presets.start(data)
  if data == 'cifar':
    config.data.random_flip = False
    config.eval.update(every=10_000, teacher_steps=0)
  num_pairs, shard_size = _PAIRS[data]
  data_presets.couplings(config, num_pairs, shard_size, ode_steps, ode_method)
  straightness_steps, straightness_samples = _STRAIGHTNESS[data]
  config.eval.update(straightness_steps=straightness_steps,
                     straightness_samples=straightness_samples)
  return config


def get_config(arg: str = 'gmm2d'):
  data, _ = data_presets.parse_arg(arg, 'reflow', DATA_SETS)
  config = on_couplings(data, EDM_TEACHER_ODE_STEPS[data])
  config.teacher.update(data_presets.EDM_TEACHERS[data])
  config.objective.update(name='reflow', time_distribution='u_shaped', u_shape_a=4.0,
                          metric='pseudo_huber', couplings='dataset', init_from_teacher=True)
  if data == 'gmm2d':
    config.network.parameterization = 'flow'
    config.objective.init_from_teacher = False
    config.optim.update(lr=1e-3, warmup_steps=100, grad_clip=1.0)
    config.train.update(num_steps=4000, sample_every=2000, ema_decay=0.995)
  elif data == 'digits':
    config.network.dropout = 0.0
    config.objective.t_max = EDM_STUDENT_T_MAX
    config.optim.update(lr=2e-4, warmup_steps=100, grad_clip=1.0)
    config.train.update(num_steps=3000, log_every=100, checkpoint_every=500, ema_decay=0.999)
  else:
    config.network.update(parameterization='flow', dropout=0.13)
    config.objective.update(metric='lpips_huber', lpips_pooling='average', lpips_divide_by_t=True)
    config.optim.update(lr=2e-4, warmup_steps=5000, grad_clip=0.0)
    config.train.update(num_steps=200_000, ema_decay=0.9999)
  return config
