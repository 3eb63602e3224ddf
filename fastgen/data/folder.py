"""A directory of images, read once into memory as uint8 and served in shuffled epochs.

``config.path`` is searched recursively for .png/.jpg/.jpeg files (sorted by path). If every image
lies inside a first-level subfolder and there are at least two such subfolders, the subfolders are
the classes (labels in sorted name order); otherwise the set is unconditional. Each image is
center-cropped to a square and resized to ``config.resolution`` (bicubic); ``config.channels``
is 3 (RGB, default) or 1 (grayscale).
"""

import os

import numpy as np
from PIL import Image, ImageOps

from fastgen.data import stream

EXTENSIONS = ('.png', '.jpg', '.jpeg')


def find_images(path: str) -> list[str]:
  """Image files under ``path``, relative to it, sorted; ValueError if none or no such folder."""
  if not path or not os.path.isdir(path):
    raise ValueError(f'folder data set: data.path={path!r} is not a directory')
  files = sorted(
      os.path.relpath(os.path.join(root, name), path)
      for root, _, names in os.walk(path) for name in names
      if name.lower().endswith(EXTENSIONS))
  if not files:
    raise ValueError(f'folder data set: no {"/".join(EXTENSIONS)} images under {path!r}')
  return files


def class_names(files: list[str]) -> list[str]:
  """The sorted first-level subfolders if they hold every image and are at least two, else []."""
  parts = [f.split(os.sep, 1) for f in files]
  if any(len(p) == 1 for p in parts):
    return []
  names = sorted({p[0] for p in parts})
  return names if len(names) > 1 else []


def load_image(file: str, resolution: int, channels: int) -> np.ndarray:
  """``file`` center-cropped and resized: uint8 [resolution, resolution, channels]."""
  with Image.open(file) as image:
    image = image.convert('RGB' if channels == 3 else 'L')
    image = ImageOps.fit(image, (resolution, resolution), Image.Resampling.BICUBIC)
    return np.asarray(image, np.uint8).reshape(resolution, resolution, channels)


def load_folder(path: str, resolution: int, channels: int = 3):
  """``(images uint8 [N, r, r, C], labels int32 [N], num_classes)`` of the folder at ``path``."""
  if channels not in (1, 3):
    raise ValueError(f'folder data set: channels must be 1 or 3, got {channels}')
  files = find_images(path)
  names = class_names(files)
  images = np.stack([load_image(os.path.join(path, f), resolution, channels) for f in files])
  labels = np.array([names.index(f.split(os.sep, 1)[0]) if names else 0 for f in files], np.int32)
  return images, labels, len(names)


def make_folder(config, seed: int, process_index: int, process_count: int) -> stream.ArrayStream:
  """Shuffled epochs of the folder; keys: ``batch_size``, ``path``, ``resolution``, ``channels``."""
  images, labels, num_classes = load_folder(config.get('path', ''), config.resolution,
                                            config.get('channels', 3))
  return stream.ArrayStream(images, labels, num_classes, batch_size=config.batch_size, seed=seed,
                            process_index=process_index, process_count=process_count)
