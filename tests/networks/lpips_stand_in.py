"""Stand-in LPIPS weights of the documented layout (fastgen ships no real ones; tests download
nothing): random VGG-16 convolutions, non-negative linear weights."""

import numpy as np

from fastgen.networks import lpips


def write_weights(path: str, seed: int = 0) -> str:
  """Writes the stand-in ``.npz`` to ``path`` and returns ``path``."""
  rng = np.random.default_rng(seed)
  arrays = {name: (np.abs(rng.standard_normal(shape)) if name.startswith('lin') else
                   rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[:-1])))
            for name, shape in lpips.expected_shapes().items()}
  np.savez(path, **{k: v.astype(np.float32) for k, v in arrays.items()})
  return path
