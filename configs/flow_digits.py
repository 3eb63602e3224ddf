"""Flow-matching (1-rectified-flow) teacher on the 8x8 digits, class-conditional (CPU).

  python -m fastgen.main --config=configs/flow_digits.py --workdir=runs/flow_digits
"""

import ml_collections

from configs import edm_digits


def get_config():
  config = edm_digits.get_config()
  config.network.parameterization = 'flow'
  config.objective = ml_collections.ConfigDict(dict(
      name='flow_matching', time_distribution='logit_normal', label_dropout=0.1))
  config.sample.num_steps = 32  # Euler steps in t = network evaluations
  config.eval.steps = (32,)
  return config
