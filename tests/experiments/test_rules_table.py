"""experiments/rules_table.py's count of teacher evaluations per training sample."""

import os
import sys

import pytest

from fastgen import configs
from fastgen import experiment as experiment_lib

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'experiments'))
import rules_table  # pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.mark.parametrize('config_name, calls', [
    ('sid_gmm2d', 1.0),     # the generator's loss queries the teacher once; the fake score never
    ('pd_gmm2d', 2.0),      # two DDIM steps of the round's teacher
    # stage one's guided teacher: the conditional and the null-label batch, one call of 2 B
    ('guided_gmm2d', 2.0),
    ('ct_gmm2d', 0.0),      # consistency training has no teacher
])
def test_teacher_calls_count_every_example_the_teacher_evaluates(config_name, calls):
  config = configs.get_config(config_name)
  experiment = experiment_lib.Experiment(config)
  assert rules_table.teacher_calls_per_sample(experiment, 10) == calls
