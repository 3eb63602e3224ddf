"""Reference statistics of a fastgen data set, in EDM's ``.npz`` format (``mu``, ``sigma``).

  python -m fastgen.evaluation.reference --dataset=digits --features=digits \
      --out=refs/digits-train-digits.npz
  python -m fastgen.evaluation.reference --dataset=cifar10 --features=inception \
      --inception_weights=/path/inception-2015-12-05.pkl --num_samples=50000 \
      --out=refs/cifar10-32x32.npz

or with the data section of a training config: ``--config=configs/edm_cifar.py`` (a name of
:mod:`fastgen.configs` or a config file; then ``--dataset``, ``--split`` and ``--data_dir`` are
ignored). The digits use every image of the split once. Other sets read ``--num_samples`` images
(rounded up to whole batches) from the start of the seed-0 stream of
:func:`fastgen.data.make_dataset`, i.e. distinct images while ``num_samples`` is at most the set's
size. For CIFAR-10, EDM's published ``cifar10-32x32.npz`` (all 50k training
images, NVIDIA's detector) can be used as is.
"""

import math

import jax
import ml_collections
import numpy as np

from fastgen import data, logs
from fastgen.data import digits
from fastgen.evaluation import extractors, frechet


def image_batches(data_config, num_samples: int, batch_size: int):
  """This process's share of the reference images, as numpy batches [b, H, W, C] in [-1, 1].

  ``data_config``: a data section (``name``, data-set keys); ``batch_size`` is the global batch.
  ``num_samples`` 0 means all of a finite set (digits only).
  """
  if data_config.name == 'digits':
    x, _ = digits.load_digits_array(data_config.get('split', 'train'))
    x = x[:num_samples or None][jax.process_index()::jax.process_count()]
    local = max(batch_size // jax.process_count(), 1)
    for start in range(0, len(x), local):
      yield x[start:start + local]
    return
  if not num_samples:
    raise ValueError(f'data set {data_config.name!r}: give the number of reference images '
                     f'(e.g. 50000 for CIFAR-10)')
  config = ml_collections.ConfigDict(data_config.to_dict())
  config.batch_size, config.random_flip = batch_size, False
  stream = data.make_dataset(config, seed=0, process_index=jax.process_index(),
                             process_count=jax.process_count())
  progress = logs.Progress('reference statistics', math.ceil(num_samples / batch_size), 'batches')
  for _ in range(progress.total):
    yield next(stream)['x']
    progress.advance()  # after the consumer's feature extraction of the batch


def compute_reference(extractor, batches) -> frechet.FeatureStats:
  """Feature statistics of image ``batches`` (each process its own), merged across processes."""
  stats = frechet.FeatureStats(extractor.dim)
  for images in batches:
    stats.update(np.asarray(extractor.features(images)))
  return frechet.allgather_stats(stats)


def main(argv):
  del argv
  weights = _WEIGHTS.value if _FEATURES.value == 'inception' else ''
  extractor = extractors.make_extractor(_FEATURES.value, weights)
  if _CONFIG.value is not None:
    data_config = _CONFIG.value.data
  else:
    data_config = ml_collections.ConfigDict(
        {'name': _DATASET.value, 'split': _SPLIT.value, 'data_dir': _DATA_DIR.value})
  stats = compute_reference(
      extractor, image_batches(data_config, _NUM_SAMPLES.value, _BATCH_SIZE.value))
  if jax.process_index() == 0:
    frechet.save_reference(_OUT.value, stats.mean, stats.cov)
    print(f'wrote {_OUT.value}: {stats.count} images, {_FEATURES.value} features '
          f'(dimension {stats.dim})')


if __name__ == '__main__':
  import sys
  from absl import app, flags
  from ml_collections import config_flags
  from fastgen import configs
  _CONFIG = config_flags.DEFINE_config_file(
      'config', None, 'A training config (a fastgen.configs name or a file): its data section.')
  _DATASET = flags.DEFINE_string('dataset', 'digits', 'A fastgen data set (fastgen.data).')
  _SPLIT = flags.DEFINE_string('split', 'train', 'Split of the data set.')
  _DATA_DIR = flags.DEFINE_string('data_dir', '', 'data_dir of TFDS / folder data sets.')
  _FEATURES = flags.DEFINE_enum('features', 'digits', ['inception', 'digits'], 'Features.')
  _WEIGHTS = flags.DEFINE_string(
      'inception_weights', '', 'Inception weights (default: $FASTGEN_INCEPTION_WEIGHTS).')
  _NUM_SAMPLES = flags.DEFINE_integer('num_samples', 0, 'Images; 0 = the whole split (digits).')
  _BATCH_SIZE = flags.DEFINE_integer('batch_size', 500, 'Images per feature batch.')
  _OUT = flags.DEFINE_string('out', None, 'Output .npz (EDM format).', required=True)
  app.run(main, argv=configs.resolve_config_flag(sys.argv))
