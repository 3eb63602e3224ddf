"""Sample pictures: image grids and 2-D point densities as PNG."""

import numpy as np
from PIL import Image


def to_uint8(images) -> np.ndarray:
  """[-1, 1] floats -> uint8 [0, 255]."""
  return np.clip(np.round((np.asarray(images, np.float32) + 1) * 127.5), 0, 255).astype(np.uint8)


def grid(images, columns: int | None = None, upscale: int = 1) -> np.ndarray:
  """[N, H, W, C] images in [-1, 1] -> one [rows*H, cols*W, C] uint8 image (1-px gaps)."""
  images = to_uint8(images)
  n, h, w, c = images.shape
  columns = columns or int(np.ceil(np.sqrt(n)))
  rows = int(np.ceil(n / columns))
  canvas = np.zeros((rows * (h + 1) + 1, columns * (w + 1) + 1, c), np.uint8)
  for i, image in enumerate(images):
    r, col = divmod(i, columns)
    canvas[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + col * (w + 1):1 + col * (w + 1) + w] = image
  return canvas.repeat(upscale, 0).repeat(upscale, 1)


def scatter(points, size: int = 256, extent: float = 4.0) -> np.ndarray:
  """[N, 2] points -> a [size, size, 1] uint8 density picture of [-extent, extent]^2."""
  points = np.asarray(points)
  hist, _, _ = np.histogram2d(points[:, 1], points[:, 0], bins=size,
                              range=[[-extent, extent], [-extent, extent]])
  density = np.log1p(hist[::-1]) / max(np.log1p(hist).max(), 1e-9)
  return (255 - 255 * density).astype(np.uint8)[..., None]


def picture(samples, upscale: int = 8) -> np.ndarray:
  """A PNG-able picture of samples: a grid for images, a density plot for 2-D points."""
  samples = np.asarray(samples)
  if samples.ndim == 2 and samples.shape[1] == 2:
    return scatter(samples)
  return grid(samples, upscale=upscale)


def save_png(path: str, picture_uint8: np.ndarray) -> None:
  array = picture_uint8[..., 0] if picture_uint8.shape[-1] == 1 else picture_uint8
  Image.fromarray(array).save(path)
