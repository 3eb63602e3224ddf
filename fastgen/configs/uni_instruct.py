"""Uni-Instruct one-step generators (Wang et al. 2025): the expanded f-divergence, forward KL by
default (the paper's best ImageNet-64 run), with a density-ratio head on the fake score trained on
real data.

  python -m fastgen.main --config=configs/uni_instruct_gmm2d.py --workdir=runs/uni_instruct_gmm2d
  python -m fastgen.main --config=configs/uni_instruct_cifar.py --workdir=runs/uni_instruct_cifar \\
      --config.teacher.workdir=/path/to/edm_cifar10_cond_converted \\
      --config.data.data_dir=/path/to/tensorflow_datasets

``--config.objective.divergence=reverse_kl`` or ``js`` picks the other divergences. The recipe
is SiD's (configs/sid.py: sigma_init 2.5, generator times u in [0, 0.8], the fake score at its
log-normal noise levels, Adam with beta1 = 0);
no official Uni-Instruct training code was found, so the cifar hyperparameters (batch 256,
lr 1e-5, EMA half-life 0.5 Mimg, 100 Mimg) are SiD's, not checked against the paper's appendix.

- gmm2d: fresh generator, fake score and head (the teacher is the exact mixture); the real data
  are the mixture's samples.
- digits: from runs/edm_digits (generator and fake score start from it, the head fresh),
  sid_digits' settings (4000 steps, EMA 0.999, the fake score on train-mode generator samples);
  the real data are the digits training split.
- cifar: class-conditional, from the EDM DDPM++ cond. VP teacher; the real data set must be on
  disk (the discriminator reads it).
"""

from fastgen.configs import data_presets
from fastgen.configs import sid as sid_configs

DATA_SETS = ('gmm2d', 'digits', 'cifar')


def get_config(arg: str = 'gmm2d'):
  data, _ = data_presets.parse_arg(arg, 'uni_instruct', DATA_SETS)
  config = sid_configs.get_config(data)
  kept = ('sigma_init', 'u_min', 'u_max', 'init_from_teacher', 'p_mean', 'p_std',
          'fake_score_samples_in_train_mode')
  options = {k: v for k, v in config.objective.items() if k in kept}
  config.objective = type(config.objective)(dict(
      options, name='uni_instruct', divergence='forward_kl', discriminator_weight=1.0,
      head_hidden=256))
  return config
