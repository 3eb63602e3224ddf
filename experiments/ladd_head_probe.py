"""Can a discriminator tell a LADD digits run's one-step samples from the teacher samples it
trains against, and in which features?

  python experiments/ladd_head_probe.py runs/ladd_digits [--steps=1000]

Draws 4096 one-step samples of the run's newest checkpoint (EMA weights) and takes the first 4096
"real" samples of its coupling data set (the teacher's Heun samples LADD trains against), with
their labels. Then trains fresh two-layer heads (LADD's form, ``fake_score.init_head``; hinge loss,
Adam with beta1 = 0 and beta2 = 0.99, batch 256 per side) on 3072 samples per side and prints
each head's AUC on the other 1024, averaged over 4 draws of the re-noising, for these features:

* the frozen teacher's bottleneck at the run's re-noising levels (what LADD's head reads), at
  lr 1e-4 and 1e-3, and at fixed sigma = 0.02 and 0.18 (lr 1e-3);
* the shipped digits classifier's 64 features (FID's feature space) of the clean samples;
* the clean samples' 64 pixels.

An AUC of 0.5 is chance. The run's set-up is rebuilt from its own ``config.json``; the teacher
features are always the bottleneck, whatever heads the run trained.
"""

import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.metrics import roc_auc_score

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from fastgen import teachers  # pylint: disable=wrong-import-position
from fastgen import experiment as experiment_lib  # pylint: disable=wrong-import-position
from fastgen.evaluation import digits_features  # pylint: disable=wrong-import-position
from fastgen.objectives import fake_score, ladd  # pylint: disable=wrong-import-position
from fastgen.step import sampling_params  # pylint: disable=wrong-import-position

NUM, TRAIN, BATCH = 4096, 3072, 256


def samples(workdir: str):
  """(experiment, real x, real labels, generated x, generated labels)."""
  experiment = experiment_lib.Experiment(teachers.read_config(workdir), workdir)
  _, state = experiment_lib.restore_latest(experiment, workdir)
  real, real_labels = [], []
  while sum(len(x) for x in real) < NUM:
    batch = next(experiment.data)
    real.append(np.asarray(batch['x']))
    real_labels.append(np.asarray(batch['label']))
  fake, fake_labels = [], []
  for i in range(0, NUM, 1024):
    rng = jax.random.fold_in(jax.random.key(7), i)
    fake.append(np.asarray(experiment.sample(sampling_params(state), rng, 1024, 1)))
    fake_labels.append(np.asarray(experiment.sample_labels(1024)))
  return (experiment, np.concatenate(real)[:NUM], np.concatenate(real_labels)[:NUM],
          np.concatenate(fake), np.concatenate(fake_labels))


def feature_fn(kind: str, experiment, sigma=None):
  """features(x, labels, key) for a feature source."""
  objective = experiment.objective
  if kind == 'teacher':
    def features(x, labels, key):
      key_sigma, key_noise = jax.random.split(key)
      level = (jnp.full(x.shape[:1], sigma) if sigma is not None else ladd.sample_renoise_sigma(
          key_sigma, x.shape[:1], objective.logit_mean, objective.logit_std,
          objective.denoiser.sigma_data))
      x_t = x + level[:, None, None, None] * jax.random.normal(key_noise, x.shape)
      return objective.teacher.with_features(experiment.teacher_params, x_t, level, labels)[1]
    return features
  if kind == 'classifier':
    classifier = digits_features.load_digits_features()
    return lambda x, labels, key: classifier.features(x)
  return lambda x, labels, key: x


def probe(features, data, lr: float, steps: int) -> dict:
  """Trains a fresh head on the first TRAIN samples per side; AUC on the rest."""
  x_real, l_real, x_fake, l_fake = (jnp.asarray(a) for a in data)
  shape = jax.eval_shape(lambda: features(x_real[:2], l_real[:2], jax.random.key(0))).shape
  head = fake_score.init_head(jax.random.key(1), shape[1:], 256)
  optimizer = optax.adam(lr, b1=0.0, b2=0.99)
  opt_state = optimizer.init(head)
  logits = lambda head, x, labels, key: fake_score.discriminator_logits(
      features(x, labels, key), head)[:, 0]

  @jax.jit
  def update(head, opt_state, key):
    key_real, key_fake, key_r, key_f = jax.random.split(key, 4)
    i = jax.random.randint(key_real, (BATCH,), 0, TRAIN)
    j = jax.random.randint(key_fake, (BATCH,), 0, TRAIN)
    loss = lambda h: jnp.mean(ladd.hinge_discriminator_loss(
        logits(h, x_real[i], l_real[i], key_r)[:, None],
        logits(h, x_fake[j], l_fake[j], key_f)[:, None]))
    value, grads = jax.value_and_grad(loss)(head)
    updates, opt_state = optimizer.update(grads, opt_state, head)
    return optax.apply_updates(head, updates), opt_state, value

  for step in range(steps):
    head, opt_state, loss = update(head, opt_state, jax.random.fold_in(jax.random.key(2), step))
  score = jax.jit(logits)

  def auc(part):
    values = []
    for draw in range(4):
      key = jax.random.fold_in(jax.random.key(3), draw)
      real = np.asarray(score(head, x_real[part], l_real[part], key))
      fake = np.asarray(score(head, x_fake[part], l_fake[part], jax.random.fold_in(key, 1)))
      values.append(roc_auc_score(np.r_[np.ones(len(real)), np.zeros(len(fake))],
                                  np.r_[real, fake]))
    return float(np.mean(values))
  return {'final_loss': float(loss), 'train_auc': auc(slice(0, TRAIN)),
          'heldout_auc': auc(slice(TRAIN, None))}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
  parser.add_argument('workdir')
  parser.add_argument('--steps', type=int, default=1000, help='head training steps')
  args = parser.parse_args()
  experiment, *data = samples(args.workdir)
  for kind, lr, sigma in (('teacher', 1e-4, None), ('teacher', 1e-3, None),
                          ('teacher', 1e-3, 0.02), ('teacher', 1e-3, 0.18),
                          ('classifier', 1e-3, None), ('pixels', 1e-3, None)):
    result = probe(feature_fn(kind, experiment, sigma), data, lr, args.steps)
    level = (sigma or 'renoise') if kind == 'teacher' else 'clean'
    print(json.dumps({'features': kind, 'sigma': level, 'lr': lr, **result}), flush=True)


if __name__ == '__main__':
  main()
