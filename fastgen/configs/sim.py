"""Score Implicit Matching one-step generators (Luo et al. 2024), pseudo-Huber distance.

  python -m fastgen.main --config=configs/sim_gmm2d.py --workdir=runs/sim_gmm2d   # CPU, ~1 min
  python -m fastgen.main --config=configs/sim_cifar.py --workdir=runs/sim_cifar \\
      --config.teacher.workdir=/path/to/edm_cifar10_cond_converted \\
      --config.data.data_dir=/path/to/tensorflow_datasets

The recipe is SiD's (configs/sid.py: EDM teacher, one-step generator at sigma_init 2.5,
generator times u in [0, 0.8] of the noise range, alternating fake-score and generator updates)
with SIM's loss, not checked against the SIM paper's settings; the pseudo-Huber constant
``huber_c`` is on the sum over dimensions of denoiser differences.

- gmm2d: the teacher is the exact mixture denoiser; generator and fake score start fresh, with
  sid_gmm2d's optimizer and fake-score noise levels.
- digits: from runs/edm_digits, sid_digits' settings (4000 steps, EMA 0.999).
- cifar: class-conditional, from the EDM DDPM++ cond. VP teacher; batch 256, Adam lr 1e-5 with
  betas (0, 0.999) for both networks, EMA half-life 0.5 Mimg, fp32, 800 Mimg (SiD's
  ``run_sid.sh cifar10-cond`` settings). Not verified against the SIM paper's own table of
  hyperparameters; huber_c = 1 is fastgen's choice.
"""

from fastgen.configs import data_presets
from fastgen.configs import sid as sid_configs

DATA_SETS = ('gmm2d', 'digits', 'cifar')


def get_config(arg: str = 'gmm2d'):
  data, _ = data_presets.parse_arg(arg, 'sim', DATA_SETS)
  config = sid_configs.get_config(data)
  options = {k: v for k, v in config.objective.items() if k != 'alpha'}
  config.objective = type(config.objective)(dict(options, name='sim', huber_c=1.0))
  return config
