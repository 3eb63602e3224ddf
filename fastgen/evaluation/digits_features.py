"""Digits FID features: the penultimate layer of a small CNN classifier of the 8x8 digits.

Inception features mean nothing on 8x8 grey digits, so CPU benchmarks measure FID (Heusel et al.
2017) in the 64-d penultimate-layer features of this classifier, trained on the digits 'train'
split (1500 images) and shipped as ``fastgen/assets/digits_classifier.msgpack``. Held-out
accuracy on the 297 'test' images: 99.3% (the file records it). Retrain (seeded, ~35 s on 2 CPU
cores) with

  python -m fastgen.evaluation.digits_features --out=fastgen/assets/digits_classifier.msgpack

The features are GELU activations, so no unit is exactly dead and the feature covariance of the
digits is full rank.
"""

import functools
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import serialization

from fastgen.data import digits

DEFAULT_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'assets',
                            'digits_classifier.msgpack')
FEATURE_DIM = 64
NUM_CLASSES = 10
_FORMAT = 'fastgen-digits-classifier-v1'


class DigitsClassifier(nn.Module):
  """[N, 8, 8, 1] in [-1, 1] -> ``(features [N, 64], logits [N, 10])``."""

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(nn.Conv, kernel_size=(3, 3), precision=jax.lax.Precision.HIGHEST)
    dense = functools.partial(nn.Dense, precision=jax.lax.Precision.HIGHEST)
    x = nn.gelu(conv(32)(x))
    x = nn.gelu(conv(32)(x))
    x = nn.avg_pool(x, (2, 2), (2, 2))                  # 4x4
    x = nn.gelu(conv(64)(x))
    x = nn.avg_pool(x, (2, 2), (2, 2))                  # 2x2
    features = nn.gelu(dense(FEATURE_DIM)(x.reshape(x.shape[0], -1)))
    return features, dense(NUM_CLASSES)(features)


class DigitsFeatures:
  """Feature extractor: ``features(images [N, 8, 8, 1] in [-1, 1]) -> [N, 64]`` (jitted)."""
  name = 'digits'
  dim = FEATURE_DIM

  def __init__(self, params):
    self.params = params
    apply = jax.jit(lambda params, x: DigitsClassifier().apply({'params': params}, x))
    self._apply = lambda images: apply(self.params, jnp.asarray(images, jnp.float32))

  def features_and_logits(self, images):
    """``(features [N, 64], logits [N, 10])`` of one classifier pass."""
    if tuple(images.shape[1:]) != (8, 8, 1):
      raise ValueError(f'digits features need [N, 8, 8, 1] images, got shape {images.shape}')
    return self._apply(images)

  def features(self, images):
    return self.features_and_logits(images)[0]

  def logits(self, images):
    return self.features_and_logits(images)[1]


def load_digits_features(path: str = DEFAULT_PATH) -> DigitsFeatures:
  """The shipped classifier (or the one at ``path``) as a feature extractor."""
  if not os.path.exists(path):
    raise FileNotFoundError(f'digits classifier weights {path} not found; train them with '
                            f'python -m fastgen.evaluation.digits_features --out={path}')
  with open(path, 'rb') as f:
    state = serialization.msgpack_restore(f.read())
  if not isinstance(state, dict) or state.get('format') != _FORMAT:
    raise ValueError(f'{path} is not a fastgen digits classifier; retrain it with '
                     f'python -m fastgen.evaluation.digits_features --out={path}')
  return DigitsFeatures(state['params'])


def _shift(rng, x):
  """Augmentation: each image moved by up to one pixel in each direction (background -1)."""
  shifts = rng.integers(-1, 2, size=(len(x), 2))
  padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-1.0)
  return np.stack([padded[i, 1 + dy:9 + dy, 1 + dx:9 + dx] for i, (dy, dx) in enumerate(shifts)])


def train_classifier(x, y, *, num_steps: int = 3000, batch_size: int = 128, lr: float = 2e-3,
                     seed: int = 0):
  """Adam + cosine decay on cross-entropy with one-pixel shifts; returns params."""
  model = DigitsClassifier()
  params = model.init(jax.random.key(seed), jnp.zeros((1, 8, 8, 1)))['params']
  optimizer = optax.adamw(optax.cosine_decay_schedule(lr, num_steps), weight_decay=1e-4)
  opt_state = optimizer.init(params)

  @jax.jit
  def step(params, opt_state, xb, yb):
    def loss_fn(p):
      logits = model.apply({'params': p}, xb)[1]
      return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  rng = np.random.default_rng(seed)
  for _ in range(num_steps):
    idx = rng.integers(len(x), size=batch_size)
    params, opt_state, _ = step(params, opt_state, _shift(rng, x[idx]), y[idx])
  return params


def accuracy(extractor: DigitsFeatures, x, y) -> float:
  return float((np.asarray(extractor.logits(x)).argmax(-1) == y).mean())


def main(argv):
  del argv
  x_train, y_train = digits.load_digits_array('train')
  x_test, y_test = digits.load_digits_array('test')
  params = train_classifier(x_train, y_train, num_steps=_STEPS.value, seed=_SEED.value)
  test_accuracy = accuracy(DigitsFeatures(params), x_test, y_test)
  os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
  with open(_OUT.value, 'wb') as f:
    f.write(serialization.msgpack_serialize(
        {'format': _FORMAT, 'params': jax.device_get(params), 'test_accuracy': test_accuracy}))
  logging.info('wrote %s', _OUT.value)
  print(f'held-out accuracy on the {len(y_test)} digits test images: {test_accuracy:.2%}')


if __name__ == '__main__':
  from absl import app, flags
  _OUT = flags.DEFINE_string('out', DEFAULT_PATH, 'Where to write the classifier weights.')
  _STEPS = flags.DEFINE_integer('num_steps', 3000, 'Training steps (batch 128).')
  _SEED = flags.DEFINE_integer('seed', 0, 'Initialisation and batch-order seed.')
  app.run(main)
