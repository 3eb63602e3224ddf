"""Evaluation: FID in Inception or domain features, exact metrics for analytic targets.

:mod:`frechet` (statistics, distance, reference files), :mod:`inception` and
:mod:`digits_features` (feature extractors), :mod:`exact` (metrics against a known mixture),
:mod:`evaluator` (what the trainer calls), :mod:`reference` (reference-statistics command).

A feature extractor has ``name``, ``dim`` and ``features(images [N, H, W, C] in [-1, 1]) ->
[N, dim]`` (jitted; a batch sharded over devices stays sharded).
"""

FEATURES = ('inception', 'digits')


def make_extractor(name: str, weights: str = ''):
  """The feature extractor ``name``: ``'inception'`` (``weights``: a path, '' for
  ``$FASTGEN_INCEPTION_WEIGHTS``) or ``'digits'`` (``weights``: '' for the shipped classifier)."""
  if name == 'inception':
    from fastgen.evaluation import inception
    return inception.load_inception(weights)
  if name == 'digits':
    from fastgen.evaluation import digits_features
    return digits_features.load_digits_features(weights or digits_features.DEFAULT_PATH)
  raise ValueError(f'unknown feature extractor {name!r}; known: {", ".join(FEATURES)} '
                   f'(and "exact" for analytic teachers, which needs no features)')
