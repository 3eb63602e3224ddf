"""Uni-Instruct one-step generators (Wang et al. 2025): the expanded f-divergence, forward KL by
default (the paper's best ImageNet-64 run), with a density-ratio head on the fake score trained on
real data.

  python -m fastgen.main --config=configs/uni_instruct_gmm2d.py --workdir=runs/uni_instruct_gmm2d
  python -m fastgen.main --config=configs/uni_instruct_cifar.py --workdir=runs/uni_instruct_cifar \\
      --config.teacher.workdir=/path/to/edm_cifar10_cond_converted \\
      --config.data.data_dir=/path/to/tensorflow_datasets
  python -m fastgen.main --config=configs/uni_instruct_imagenet64.py \\
      --workdir=runs/uni_instruct_imagenet64 \\
      --config.teacher.workdir=/path/to/edm_imagenet64_cond_adm_converted \\
      --config.data.data_dir=/path/to/tensorflow_datasets

``--config.objective.divergence=reverse_kl`` or ``js`` picks the other divergences. The recipe
is SiD's (configs/sid.py: sigma_init 2.5, generator times u in [0, 0.8], the fake score at its
log-normal noise levels, Adam with beta1 = 0). The first author's code
(github.com/a-little-hoof/Uni_Instruct at 3cdf92e, released November 2025, built on SiDA's code)
runs its cifar10 and imagenet64 commands (``run_uni_instruct.sh``) with SiD's settings for the
shared options (tmax 800, init_sigma 2.5, lr, batch, dropout, EMA) and 300 Mimg. How its loss
differs from this rule's (its ratio weight is in effect 1, its non-forward-KL branches do not
run as released): docs/rules/uni_instruct.md. Recipe differences from that code, every data
set: its generator loss also carries SiDA's GAN term (``--use_gan 1 --lsg_gan 0.01``); its
generator stays frozen for the first 100 kimg, then trains on SiD's loss at alpha = 1 without
the GAN term until 200 kimg; its discriminator (``--lsd 1``) is weighted 30-120x less against
the denoising loss than ``discriminator_weight`` 1 here; the fake score's gradients are clipped
by value at 1; its forward-KL commands (``*-sid``) start the generator from a distilled SiD
checkpoint (``--sid_model``), this config from the teacher.

- gmm2d: fresh generator, fake score and head (the teacher is the exact mixture); the real data
  are the mixture's samples.
- digits: from runs/edm_digits (generator and fake score start from it, the head fresh),
  sid_digits' settings (4000 steps, EMA 0.999, the fake score on train-mode generator samples);
  the real data are the digits training split.
- cifar: class-conditional, from the EDM DDPM++ cond. VP teacher; the real data set must be on
  disk (the discriminator reads it). sid_cifar's settings, which the script's cifar10-cond
  commands share (lines 65-97, 171-203): batch 256, lr 1e-5, EMA half-life 0.5 Mimg; 300 Mimg =
  1,171,875 steps (``--duration 300``).
- imagenet64: class-conditional, from EDM's ADM ImageNet-64 model (edm-imagenet-64x64-cond-adm
  converted, or a run of configs/edm_imagenet64.py); the real ImageNet 64x64 set must be on disk.
  sid_imagenet64's settings, which the script's imagenet64-cond commands share (lines 99-132,
  206-239): batch 8192, Adam lr 4e-6 for both networks, dropout 0.1, no augmentation, EMA
  half-life 2 Mimg, fp16 in the script with Adam eps 1e-6 (fsim_train.py lines 215-216; the eps
  kept here, in fp32); 300 Mimg = 36,622 steps (``--duration 300``). Paper: one-step FID 1.02,
  its forward-KL run.
"""

from fastgen.configs import data_presets
from fastgen.configs import sid as sid_configs

DATA_SETS = ('gmm2d', 'digits', 'cifar', 'imagenet64')


def get_config(arg: str = 'gmm2d'):
  data, _ = data_presets.parse_arg(arg, 'uni_instruct', DATA_SETS)
  config = sid_configs.get_config(data)
  kept = ('sigma_init', 'u_min', 'u_max', 'init_from_teacher', 'p_mean', 'p_std',
          'fake_score_samples_in_train_mode')
  options = {k: v for k, v in config.objective.items() if k in kept}
  config.objective = type(config.objective)(dict(
      options, name='uni_instruct', divergence='forward_kl', discriminator_weight=1.0,
      head_hidden=256))
  if data in ('cifar', 'imagenet64'):  # 300 Mimg, the script's --duration 300
    config.train.num_steps = -(-300_000_000 // config.data.batch_size)  # rounded up
  return config
