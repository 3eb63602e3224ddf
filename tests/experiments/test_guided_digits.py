"""The guided digits measure: accuracy is taken against the label each sample was drawn for."""

import os
import sys

import numpy as np

from fastgen.data import digits
from fastgen.evaluation import digits_features, evaluator, frechet

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'experiments'))
import guided_digits  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_accuracy_and_fid_of_real_digits_drawn_for_their_labels_or_the_next_ones():
  extractor = digits_features.load_digits_features()
  x_train, _ = digits.load_digits_array('train')
  x_test, y_test = digits.load_digits_array('test')
  by_class = [x_test[y_test == c] for c in range(10)]

  def draw_for(shift):
    """For the n-th request of label c: the n-th test digit of class c + shift."""
    served = [0] * 10

    def draw(rng, labels):
      del rng
      images = []
      for c in np.asarray(labels):
        pool = by_class[(c + shift) % 10]
        images.append(pool[served[c] % len(pool)])
        served[c] += 1
      return np.stack(images)
    return draw

  train = frechet.FeatureStats(extractor.dim).update(extractor.features(x_train))
  reference = evaluator.FidEvaluator(extractor, (train.mean, train.cov), 250, 64)
  # 250 samples in batches of 64: the last batch's surplus rows are dropped, labels run on.
  right = guided_digits.measure(reference, draw_for(0), 250, 64, 10)
  wrong = guided_digits.measure(reference, draw_for(1), 250, 64, 10)
  # The classifier's held-out accuracy is 99.3%; these are 250 of those test digits.
  assert right['accuracy'] >= 0.97 and right['label_probability'] >= 0.9
  assert wrong['accuracy'] <= 0.03 and wrong['label_probability'] <= 0.1
  # FID of exactly the 250 images drawn (the surplus rows of the last batch dropped), whatever
  # labels they were drawn for: the same multiset of test digits in both.
  drawn = draw_for(0)(None, np.arange(250) % 10)
  stats = frechet.FeatureStats(extractor.dim).update(extractor.features(drawn))
  expected = frechet.frechet_distance(stats.mean, stats.cov, reference.mu, reference.sigma)
  np.testing.assert_allclose([right['fid'], wrong['fid']], expected, rtol=1e-4)
