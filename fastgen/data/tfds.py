"""``cifar10`` and ``imagenet64`` from TFDS ArrayRecord files (``tfds`` extra); never downloads.

``pip install 'fastgen-jax[tfds]'`` installs tensorflow-datasets, which reads prepared ArrayRecord
files without TensorFlow; preparing them (``tfds build``) needs TensorFlow as well.
"""


class DataUnavailableError(RuntimeError):
  """A data set's files are not on this machine (fastgen never downloads them)."""


# fastgen name -> TFDS name
TFDS_NAMES = {'cifar10': 'cifar10', 'imagenet64': 'imagenet_resized/64x64'}


def how_to_prepare(name: str) -> str:
  """The commands that prepare TFDS set ``name`` elsewhere, and the flag that points at it."""
  return (f'On a machine with internet run\n'
          f'  tfds build {TFDS_NAMES[name]} --data_dir=DIR --file_format=array_record\n'
          f'(or: python -c "import tensorflow_datasets as tfds; tfds.builder('
          f'{TFDS_NAMES[name]!r}, data_dir=\'DIR\', file_format=\'array_record\')'
          f'.download_and_prepare()"),\ncopy DIR to this machine and pass '
          f'--config.data.data_dir=DIR.')


def open_source(name: str, split: str, data_dir: str, other_format: str):
  """``(data source, image shape, number of classes)`` of a prepared TFDS ArrayRecord set.

  ``other_format`` (how to provide the set without TFDS) ends every DataUnavailableError."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise DataUnavailableError(
        f'data set {name!r}: no files of another format under data_dir={data_dir!r}, and '
        f"reading TFDS files needs the tfds extra: pip install 'fastgen-jax[tfds]'. "
        f'{other_format}') from e
  builder = tfds.builder(TFDS_NAMES[name], data_dir=data_dir or None)
  how = f'fastgen never downloads. {how_to_prepare(name)}\n{other_format}'
  if not builder.is_prepared():
    raise DataUnavailableError(
        f'data set {name!r} (TFDS {TFDS_NAMES[name]!r}) was not found under '
        f'data_dir={data_dir!r} (looked for {builder.data_dir}). {how}')
  try:
    source = builder.as_data_source(split=split)
  except NotImplementedError as e:  # Prepared, but as TFRecord: no random access.
    raise DataUnavailableError(
        f'data set {name!r} under {builder.data_dir} is not in ArrayRecord format. {how}') from e
  features = builder.info.features
  return source, features['image'].shape, features['label'].num_classes
