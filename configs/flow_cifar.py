"""1-rectified-flow (flow-matching) teacher on CIFAR-10, class-conditional: accelerator scale.

  python -m fastgen.main --config=configs/flow_cifar.py --workdir=runs/flow_cifar \\
      --config.data.data_dir=/path/to/tensorflow_datasets

configs/edm_cifar.py's DDPM++ network and training schedule (batch 512, 390,625 steps, lr 1e-3,
EMA half-life 0.5 Mimg, dropout 0.13) with the network predicting the rectified-flow velocity
(``parameterization='flow'``) and the flow-matching loss with logit-normal times (Liu et al. 2022;
Esser et al. 2024, Eq. 19). The teacher of configs/reflow_cifar.py.
"""

import ml_collections

from configs import edm_cifar


def get_config():
  config = edm_cifar.get_config()
  config.network.parameterization = 'flow'
  config.objective = ml_collections.ConfigDict(dict(
      name='flow_matching', time_distribution='logit_normal', label_dropout=0.0))
  config.sample.num_steps = 32  # Euler steps in t = network evaluations
  config.eval.steps = (32,)
  return config
