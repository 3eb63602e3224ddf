"""The objective contract (fastgen/objectives/base.py): every registered rule keeps it, and a
rule that breaks it is refused when it is defined or built, naming what is wrong."""

import dataclasses

import ml_collections
import pytest

from fastgen import objectives
from fastgen.objectives import base


def _minimal(**namespace):
  """A class body with the three required methods, plus ``namespace``."""
  methods = {name: lambda self, *args: None for name in base.REQUIRED_METHODS}
  return {'groups': ('student',), 'network_group': 'student', **methods, **namespace}


@pytest.mark.parametrize('name', sorted(objectives.OBJECTIVES))
def test_every_rule_is_a_frozen_objective_whose_network_is_a_group(name):
  cls = objectives.OBJECTIVES[name]
  assert issubclass(cls, base.Objective) and cls.__dataclass_params__.frozen
  assert cls.groups and cls.network_group in cls.groups


def test_declared_properties_follow_the_overridden_hooks():
  assert {n for n, c in objectives.OBJECTIVES.items() if c.has_velocity} == {
      'reflow', 'instaflow', 'slimflow'}
  assert {n for n, c in objectives.OBJECTIVES.items() if c.has_update_schedule} == {'dmd', 'ladd'}


def test_a_misspelt_hook_is_an_error_naming_it():
  with pytest.raises(TypeError, match=r"Rule\.train is not a method .* did you mean 'trains'"):
    type('Rule', (base.Objective,), _minimal(train=lambda self, group, step: True))
  with pytest.raises(TypeError, match=r'Rule\.helper .* must be private \(_helper\)'):
    type('Rule', (base.Objective,), _minimal(helper=lambda self: None))
  type('Rule', (base.Objective,), _minimal(_helper=lambda self: None, velocity=lambda self: 0))


@pytest.mark.parametrize('namespace, message', [
    (dict(groups=()), 'groups must be a non-empty tuple'),
    (dict(groups='student'), 'groups must be a non-empty tuple'),
    (dict(network_group='teacher'), "network_group='teacher' must be one of its groups"),
    (dict(has_velocity=True), 'has_velocity is derived'),
])
def test_a_rule_with_bad_groups_or_flags_is_refused_at_definition(namespace, message):
  with pytest.raises(TypeError, match=message):
    type('Rule', (base.Objective,), _minimal(**namespace))


def test_a_shared_base_without_loss_may_leave_its_groups_to_subclasses():
  shared = type('Shared', (base.Objective,), {'init': lambda self, *a: None})
  with pytest.raises(TypeError):  # abstract: loss and sample missing
    shared()


def test_make_objective_refuses_a_rule_that_is_not_a_frozen_dataclass(monkeypatch):
  mutable = dataclasses.dataclass(type('Mutable', (base.Objective,), _minimal()))
  monkeypatch.setitem(objectives.OBJECTIVES, 'mutable', mutable)
  config = ml_collections.ConfigDict({'objective': {'name': 'mutable'}})
  with pytest.raises(TypeError, match='must be a frozen dataclass'):
    objectives.make_objective(config)
