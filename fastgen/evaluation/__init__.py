"""Evaluation: FID in Inception or domain features, exact metrics for analytic targets.

:mod:`frechet` (statistics, distance, reference files), :mod:`inception` and
:mod:`digits_features` (feature extractors, built by name in :mod:`extractors`), :mod:`exact`
(metrics against a known mixture), :mod:`evaluator` (what the trainer calls), :mod:`reference`
(reference-statistics command).

A feature extractor has ``name``, ``dim`` and ``features(images [N, H, W, C] in [-1, 1]) ->
[N, dim]`` (jitted; a batch sharded over devices stays sharded).
"""
