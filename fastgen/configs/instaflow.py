"""InstaFlow one-step distillation of a 2-rectified flow (Liu et al. 2024, "InstaFlow"): the
student learns the one-step map of the reflow run's nearly straight ODE.

  python -m fastgen.main --config=configs/reflow_gmm2d.py --workdir=runs/reflow_gmm2d
  python -m fastgen.main --config=configs/instaflow_gmm2d.py --workdir=runs/instaflow_gmm2d
  python -m fastgen.main --config=configs/reflow_digits.py --workdir=runs/reflow_digits
  python -m fastgen.main --config=configs/instaflow_digits.py --workdir=runs/instaflow_digits
  python -m fastgen.main --config=configs/instaflow_cifar.py --workdir=runs/instaflow_cifar \\
      --config.teacher.workdir=runs/reflow_cifar --config.data.data_dir=/path/to/tfds

The pipeline is two runs: the teacher is the reflow run's EMA student (``teacher.kind=
'checkpoint'`` reads a reflow workdir), whose ODE is solved with uniform Euler steps in flow time
(32 for gmm2d and cifar, 16 for digits) for the reflow configs' numbers of noise draws (and
labels), kept in <workdir>/couplings; the student has the reflow student's network and starts
from the teacher's weights. Pseudo-Huber metric instead of the paper's LPIPS (no VGG weights).
The evaluation's metrics use the data set of ``data.source``. gmm2d: about a minute after the
reflow run (CPU); cifar: accelerator scale.
"""

from fastgen.configs import data_presets, reflow

DATA_SETS = ('gmm2d', 'digits', 'cifar')
_EULER_STEPS = {'gmm2d': 32, 'digits': 16, 'cifar': 32}


def get_config(arg: str = 'gmm2d'):
  data, _ = data_presets.parse_arg(arg, 'instaflow', DATA_SETS)
  config = reflow.on_couplings(data, _EULER_STEPS[data], ode_method='flow_euler')
  config.network = reflow.get_config(data).network
  config.teacher.update(kind='checkpoint', workdir='' if data == 'cifar' else f'runs/reflow_{data}')
  config.objective.update(name='instaflow', metric='pseudo_huber', couplings='dataset',
                          init_from_teacher=True)
  if data == 'gmm2d':
    config.optim.update(lr=3e-4, warmup_steps=100, grad_clip=1.0)
    config.train.update(num_steps=2000, ema_decay=0.995)
  elif data == 'digits':
    # Its couplings start where its 2-RF teacher's ODE starts (= the one step's t_start, 1 - 1e-3).
    config.data.ode_t_max = reflow.EDM_STUDENT_T_MAX
    config.optim.update(lr=1e-4, warmup_steps=100, grad_clip=1.0)
    config.train.update(num_steps=2000, log_every=100, checkpoint_every=500, ema_decay=0.999)
  else:
    config.optim.update(lr=1e-5, warmup_steps=0, grad_clip=0.0)
    config.train.update(num_steps=100_000, ema_decay=0.9999)
  return config
