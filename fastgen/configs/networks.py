"""EDM's network presets as ``network`` config sections, every architecture argument written out.

The three architectures of EDM (Karras et al. 2022, Table 7; ``train.py --arch``), with the
values of EDM's ``train.py`` for each (its constructor defaults where ``train.py`` sets none):

- DDPM++ (``--arch=ddpmpp``, EDM's "VP" models): SongUNet with a positional noise embedding, the
  standard encoder and the (1, 1) resampling filter (:mod:`fastgen.networks.unet`);
- NCSN++ (``--arch=ncsnpp``, the "VE" models): SongUNet with a Fourier noise embedding of twice
  the channels, the residual encoder and the (1, 3, 3, 1) filter;
- ADM (``--arch=adm``, ImageNet-64): DhariwalUNet (:mod:`fastgen.networks.adm`).

Every argument is explicit, so a section equals what :mod:`fastgen.teachers.edm_import` reads
from an EDM pickle of that architecture, and ``--config.network.<argument>=...`` can override any
of them. ``parameterization='edm'`` is EDM's preconditioning (``EDMPrecond``).
"""

import ml_collections


def _song_unet(img_resolution: int, in_channels: int, num_classes: int, **arguments):
  """A SongUNet section: EDM's CIFAR-10 sizes (``model_channels=128``, ``channel_mult=(2, 2,
  2)``, 4 blocks, attention at 16x16, ``channel_mult_emb=4``), then ``arguments``."""
  section = dict(name='unet', parameterization='edm', sigma_data=0.5,
                 img_resolution=img_resolution, in_channels=in_channels, model_channels=128,
                 channel_mult=(2, 2, 2), channel_mult_emb=4, num_blocks=4,
                 attn_resolutions=(16,), dropout=0.13, num_classes=num_classes)
  section.update(arguments)
  return ml_collections.ConfigDict(section)


def ddpmpp(img_resolution: int, in_channels: int, num_classes: int,
           **arguments) -> ml_collections.ConfigDict:
  """DDPM++ (EDM ``--arch=ddpmpp``), with ``arguments`` overriding the CIFAR-10 sizes."""
  return _song_unet(img_resolution, in_channels, num_classes, embedding_type='positional',
                    channel_mult_noise=1, encoder_type='standard', resample_filter=(1, 1),
                    **arguments)


def ncsnpp(img_resolution: int, in_channels: int, num_classes: int,
           **arguments) -> ml_collections.ConfigDict:
  """NCSN++ (EDM ``--arch=ncsnpp``), with ``arguments`` overriding the CIFAR-10 sizes."""
  return _song_unet(img_resolution, in_channels, num_classes, embedding_type='fourier',
                    channel_mult_noise=2, encoder_type='residual', resample_filter=(1, 3, 3, 1),
                    **arguments)


def adm(img_resolution: int, in_channels: int, num_classes: int,
        **arguments) -> ml_collections.ConfigDict:
  """ADM (EDM ``--arch=adm``): 192 channels, multipliers (1, 2, 3, 4), 3 blocks per level,
  attention at 32, 16 and 8, dropout 0.10 (EDM's ImageNet-64 run), then ``arguments``."""
  section = dict(name='adm', parameterization='edm', sigma_data=0.5,
                 img_resolution=img_resolution, in_channels=in_channels, model_channels=192,
                 channel_mult=(1, 2, 3, 4), channel_mult_emb=4, num_blocks=3,
                 attn_resolutions=(32, 16, 8), dropout=0.10, num_classes=num_classes)
  section.update(arguments)
  return ml_collections.ConfigDict(section)
