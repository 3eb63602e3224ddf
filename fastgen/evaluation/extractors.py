"""Feature extractors by name, for FID: ``make_extractor('inception' | 'digits', weights)``."""

from fastgen.evaluation import digits_features, inception

FEATURES = ('inception', 'digits')


def make_extractor(name: str, weights: str = ''):
  """The feature extractor ``name``: ``'inception'`` (``weights``: a path, '' for
  ``$FASTGEN_INCEPTION_WEIGHTS``) or ``'digits'`` (``weights``: '' for the shipped classifier)."""
  if name == 'inception':
    return inception.load_inception(weights)
  if name == 'digits':
    return digits_features.load_digits_features(weights or digits_features.DEFAULT_PATH)
  raise ValueError(f'unknown feature extractor {name!r}; known: {", ".join(FEATURES)} '
                   f'(and "exact" for analytic teachers, which needs no features)')
