"""1-rectified-flow (flow-matching) teachers: the EDM teachers' networks and schedules predicting
the rectified-flow velocity.

  python -m fastgen.main --config=configs/flow_digits.py --workdir=runs/flow_digits
  python -m fastgen.main --config=configs/flow_cifar.py --workdir=runs/flow_cifar \\
      --config.data.data_dir=/path/to/tensorflow_datasets

The ``edm`` config of the data set (digits: label dropout 0.1; cifar: the DDPM++ network and
training schedule, batch 512, 390,625 steps, lr 1e-3, EMA half-life 0.5 Mimg, dropout 0.13) with
the network predicting the velocity (``parameterization='flow'``) and the flow-matching loss with
logit-normal times (Liu et al. 2022; Esser et al. 2024, Eq. 19); sampled and evaluated with 32
Euler steps in t (= network evaluations). flow_cifar is the teacher of the reflow_cifar config.
"""

import ml_collections

from fastgen.configs import data_presets, edm

DATA_SETS = ('digits', 'cifar')


def get_config(arg: str = 'digits'):
  data, _ = data_presets.parse_arg(arg, 'flow', DATA_SETS)
  config = edm.get_config(data)
  config.network.parameterization = 'flow'
  config.objective = ml_collections.ConfigDict(dict(
      name='flow_matching', time_distribution='logit_normal',
      label_dropout=config.objective.label_dropout))
  config.sample.num_steps = 32
  config.eval.steps = (32,)
  return config
