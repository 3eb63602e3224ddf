"""Data presets: what a data set fixes in every config, whatever the rule.

A preset is :func:`fastgen.configs.default.get_config` with the data set's ``data``, ``network``,
``eval`` and ``sample`` sections and its ``train`` cadence (log, checkpoint, sample pictures); a
rule file (``fastgen/configs/<rule>.py``) starts from one and sets its recipe. The sections are
those of a one-step student: ``sample.num_steps=1``, in-loop evaluation at 1, 2 and 4 student
steps and of the teacher's Heun sampler at 18 steps (35 NFE).

- ``gmm2d``: the 2-D Gaussian mixture, a residual MLP (3 blocks of width 128), exact metrics
  against the known mixture (data-space Fréchet distance and sliced Wasserstein of 10k samples,
  with their sampling-noise floors);
- ``digits``: sklearn's 8x8 digits, class-conditional, the digits UNet (DDPM++ with 16 channels,
  441k parameters, ~0.25 s per batch-128 step on 2 CPU cores; every digits distillation config
  uses it, so that students start from the ``edm`` teacher's weights), FID in the shipped digits
  classifier's features against the training split;
- ``cifar``: CIFAR-10, class-conditional, EDM's DDPM++ network (55.7M parameters), FID in
  Inception pool3 features;
- ``imagenet64``: ImageNet 64x64, class-conditional, EDM's ADM network (295.9M parameters),
  FID in Inception pool3 features.

Inception FID (cifar, imagenet64) in the loop uses 10k samples; papers report 50k, with
``--mode=eval --config.eval.num_samples=50000``. Pass the community's reference statistics with
``--config.eval.reference=/path/to/cifar10-32x32.npz`` (EDM's files; imagenet-64x64.npz for
ImageNet); '' computes them from 50k training images. Inception weights:
``--config.eval.inception_weights`` or ``$FASTGEN_INCEPTION_WEIGHTS``
(inception-2015-12-05.pkl or pt_inception-2015-12-05-*.pth). TFDS sets are read from
``--config.data.data_dir`` and never downloaded.
"""

import ml_collections

from fastgen.configs import default, networks

DATA_SETS = ('gmm2d', 'digits', 'cifar', 'imagenet64')

# The EDM-trained teacher that distillation rules start from: the closed-form mixture for gmm2d,
# the workdir of the ``edm`` rule's digits run, and a workdir to pass (a run of the ``edm`` rule
# or an imported EDM checkpoint) for the accelerator-scale sets.
EDM_TEACHERS = {
    'gmm2d': dict(kind='analytic', mixture='gmm2d'),
    'digits': dict(kind='checkpoint', workdir='runs/edm_digits'),
    'cifar': dict(kind='checkpoint', workdir=''),
    'imagenet64': dict(kind='checkpoint', workdir=''),
}


def _eval_section(every: int, features: str, num_samples: int, batch_size: int,
                  reference_num_samples: int) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      every=every, features=features, num_samples=num_samples, batch_size=batch_size,
      steps=(1, 2, 4), teacher_steps=18, guidance_scale=1.0, reference='',
      reference_num_samples=reference_num_samples, inception_weights='', num_projections=512,
      seed=0))


def _sections(data: str) -> dict:
  """The ``data``, ``network``, ``eval`` and ``sample`` sections of data set ``data``, and its
  ``train`` cadence (steps between log lines, checkpoints and sample pictures)."""
  if data == 'gmm2d':
    return dict(
        data=dict(name='gmm2d', batch_size=512),
        network=dict(name='mlp', parameterization='edm', sigma_data=1.0, hidden=128, depth=3),
        eval=_eval_section(every=1000, features='exact', num_samples=10_000, batch_size=10_000,
                           reference_num_samples=0),
        sample=dict(num_samples=10_000, batch_size=10_000, grid_size=5000),
        train=dict(log_every=200, checkpoint_every=1000, sample_every=1000))
  if data == 'digits':
    return dict(
        data=dict(name='digits', batch_size=128, split='train'),
        network=networks.ddpmpp(img_resolution=8, in_channels=1, num_classes=10,
                                model_channels=16, channel_mult=(1, 2, 2), num_blocks=2,
                                attn_resolutions=(4,), dropout=0.1),
        eval=_eval_section(every=1000, features='digits', num_samples=2000, batch_size=500,
                           reference_num_samples=0),
        sample=dict(num_samples=10_000, batch_size=1000, grid_size=100),
        train=dict(log_every=200, checkpoint_every=1000, sample_every=1000))
  if data == 'cifar':
    return dict(
        data=dict(name='cifar10', batch_size=512, data_dir='', random_flip=True),
        network=networks.ddpmpp(img_resolution=32, in_channels=3, num_classes=10),
        eval=_eval_section(every=5000, features='inception', num_samples=10_000,
                           batch_size=500, reference_num_samples=50_000),
        sample=dict(num_samples=50_000, batch_size=1000, grid_size=100),
        train=dict(log_every=500, checkpoint_every=5000, sample_every=10_000))
  return dict(
      data=dict(name='imagenet64', batch_size=4096, data_dir='', random_flip=False),
      network=networks.adm(img_resolution=64, in_channels=3, num_classes=1000),
      eval=_eval_section(every=5000, features='inception', num_samples=10_000, batch_size=250,
                         reference_num_samples=50_000),
      sample=dict(num_samples=50_000, batch_size=250, grid_size=100),
      train=dict(log_every=500, checkpoint_every=5000, sample_every=10_000))


def start(data: str) -> ml_collections.ConfigDict:
  """The defaults with data set ``data``'s sections (one of :data:`DATA_SETS`)."""
  if data not in DATA_SETS:
    raise ValueError(f'unknown data preset {data!r}; known: {", ".join(DATA_SETS)}')
  config = default.get_config()
  sections = _sections(data)
  config.data = ml_collections.ConfigDict(sections['data'])
  config.network = ml_collections.ConfigDict(sections['network'])
  config.eval = sections['eval']
  config.sample.update(num_steps=1, **sections['sample'])
  config.train.update(sections['train'])
  return config


def couplings(config, num_pairs: int, shard_size: int, ode_steps: int,
              ode_method: str = 'heun') -> None:
  """Replace ``config.data`` by the coupling data set over it (``data.name='couplings'``,
  :mod:`fastgen.data.couplings`): on first use the trainer solves the teacher's ODE
  (``ode_method`` 'heun': Heun in sigma from sigma_max = 80, 2 ``ode_steps`` - 1 evaluations;
  'flow_euler': uniform Euler steps in flow time) for ``num_pairs`` noises (and labels) and keeps
  the pairs in ``<workdir>/couplings`` in shards of ``shard_size``, resumable. The former data
  section stays as ``data.source``: shapes, labels and the evaluation's reference."""
  source = config.data.to_dict()
  config.data = ml_collections.ConfigDict(dict(
      name='couplings', batch_size=source['batch_size'], directory='', source=source,
      num_pairs=num_pairs, shard_size=shard_size, ode_steps=ode_steps, ode_method=ode_method,
      coupling_seed=0))


def parse_arg(arg: str, rule: str, data_sets, variants=()) -> tuple[str, str]:
  """``(data, variant)`` of a rule file's ``get_config`` argument ``'<data>[:<variant>]'``."""
  data, _, variant = arg.partition(':')
  if data not in data_sets:
    raise ValueError(f'the {rule} configs have no data preset {data!r}; known: '
                     f'{", ".join(data_sets)}')
  if variant and variant not in variants:
    raise ValueError(f'unknown {rule}_{data} variant {variant!r}; known: '
                     f'{", ".join(variants) or "none"}')
  return data, variant
