"""``imagenet64``: ImageNet at 64x64, from a folder of class subfolders or from TFDS files.

``config.data_dir`` is either ImageNet's ``train`` folder as distributed (one subfolder per
synset, ``n01440764/*.JPEG``; labels are the subfolders in sorted order, as in TFDS), or a TFDS
data dir holding ``imagenet_resized/64x64`` (the ``tfds`` extra). Folder images are decoded when
grain asks for them (its reader threads), center-cropped and resized bicubically (PIL,
antialiased) to ``config.resolution`` (64), the crop-then-resize of ADM and EDM; TFDS's
``imagenet_resized`` instead box-resizes the whole image (Chrabaszcz et al. 2017, arXiv:1707.08819).
"""

import os

import numpy as np

from fastgen.data import folder, grain_stream, tfds

OTHER_FORMAT = ('Or pass --config.data.data_dir=<ImageNet train folder> (one subfolder of images '
                'per class).')


def is_image_folder(path: str) -> bool:
  """Whether ``path`` is a folder whose first subfolder holds images (not a TFDS data dir)."""
  if not path or not os.path.isdir(path) or os.path.isdir(os.path.join(path, 'imagenet_resized')):
    return False
  subfolders = sorted(e.path for e in os.scandir(path) if e.is_dir())
  return bool(subfolders) and any(name.lower().endswith(folder.EXTENSIONS)
                                  for name in os.listdir(subfolders[0]))


class FolderSource:
  """Image files under class subfolders as a random-access source of ``{'image', 'label'}``."""

  def __init__(self, path: str, resolution: int):
    self.path, self.resolution = path, resolution
    self.files = folder.find_images(path)
    self.classes = folder.class_names(self.files)
    if not self.classes:
      raise ValueError(f'imagenet64: {path!r} needs one subfolder per class holding every image')
    index = {name: i for i, name in enumerate(self.classes)}
    self.labels = np.array([index[f.split(os.sep, 1)[0]] for f in self.files], np.int32)

  def __len__(self) -> int:
    return len(self.files)

  def __getitem__(self, i: int) -> dict:
    image = folder.load_image(os.path.join(self.path, self.files[i]), self.resolution, 3)
    return {'image': image, 'label': self.labels[i]}


def make_imagenet64(config, seed: int, process_index: int, process_count: int):
  """Keys: ``batch_size``, ``data_dir``, ``split`` ('train', TFDS), ``resolution`` (64, folder),
  ``random_flip`` (False)."""
  data_dir = config.get('data_dir', '')
  if is_image_folder(data_dir):
    resolution = config.get('resolution', 64)
    source = FolderSource(data_dir, resolution)
    shape, num_classes = (resolution, resolution, 3), len(source.classes)
  else:
    source, shape, num_classes = tfds.open_source('imagenet64', config.get('split', 'train'),
                                                  data_dir, OTHER_FORMAT)
  return grain_stream.GrainStream(source, shape, num_classes, config, seed, process_index,
                                  process_count)
