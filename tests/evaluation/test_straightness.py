"""Straightness: zero for a flow whose paths are straight lines at constant speed, positive for
the curved probability-flow ODE of a mixture."""

import jax

from fastgen import teachers
from fastgen.evaluation import straightness
from tests.objectives import rectified_flow_toys as toys


def test_straight_flow_has_zero_straightness_and_a_mixture_ode_does_not():
  noise = jax.random.normal(jax.random.key(0), (512, 2))
  straight = straightness.straightness(toys.exact_velocity, noise, 16, 1.0 - 1e-5)
  # dx/dt = x: straight lines, but the speed changes along them.
  accelerating = straightness.straightness(lambda x, t: x, noise, 16, 1.0 - 1e-5)
  teacher, params = teachers.analytic_teacher('gmm2d')
  curved = straightness.straightness(lambda x, t: teacher.velocity(params, x, t), noise, 16,
                                     1.0 - 1e-5)
  assert float(straight) < 1e-9
  assert float(accelerating) > 1e-2 and float(curved) > 0.1
