"""ECT (Geng et al. 2024): the mapping function's values at the stage boundaries are the paper's,
the first stage is the denoising loss of the teacher it starts from, the consistency bias of the
exact consistency function of a Gaussian shrinks by q per stage, and a short run tuned from an
EDM teacher on the 2-D mixture reaches the mixture in one and two steps."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastgen import configs, objectives, samplers
from fastgen.denoiser import Denoiser
from fastgen.networks import mlp
from fastgen.objectives import ect
from tests.objectives import gmm2d_runs

MEAN, VAR = np.array([0.4, -0.7]), np.array([0.3, 1.5])


def _r(t, stage, **kwargs):
  return np.asarray(ect.mapping_r(jnp.asarray(t, jnp.float32), stage, q=2.0, k=8.0, b=1.0,
                                  **kwargs))


def test_stages_advance_every_d_steps():
  steps = jnp.array([0, 499, 500, 999, 1000, 2999, 3000])
  assert ect.stage_of(steps, 500).tolist() == [0, 0, 1, 1, 2, 5, 6]
  assert ect.stage_of(steps, 500, start_stage=6).tolist() == [6, 6, 7, 7, 8, 11, 12]


def test_mapping_function_at_the_stage_boundaries():
  # Stage a, q = 2, k = 8, b = 1: r = max(t (1 - 2^-(a+1) (1 + 8 sigmoid(-t))), 0).
  # Stage 0: r = 0 iff 1 + 8 sigmoid(-t) >= 2, i.e. t <= ln 7 (the denoising loss there);
  # stage 1: iff 1 + 8 sigmoid(-t) >= 4, t <= ln(5/3); from stage 2 on r > 0 for every t > 0.
  below, above = np.float32(1 - 1e-3), np.float32(1 + 1e-3)
  assert _r(math.log(7) * below, 0) == 0 and _r(math.log(7) * above, 0) > 0
  assert _r(math.log(5 / 3) * below, 1) == 0 and _r(math.log(5 / 3) * above, 1) > 0
  assert np.all(_r(np.geomspace(1e-3, 80, 50), 2) > 0)
  # Closed-form values: t = 2 at stage 0 and t = 80 at stages 0-3 (sigmoid(-80) ~ 2e-35).
  np.testing.assert_allclose(_r(2.0, 0), 2 * (1 - 0.5 * (1 + 8 / (1 + math.e**2))), rtol=1e-5)
  np.testing.assert_allclose(_r(80.0, np.arange(4)), 80 * (1 - 0.5 ** np.arange(1, 5)), rtol=1e-6)
  # t - r halves from one stage to the next wherever r > 0 in both.
  t = np.geomspace(0.05, 80, 40).astype(np.float32)
  dt = [t - _r(t, stage) for stage in (2, 3, 4, 5)]
  for coarse, fine in zip(dt[:-1], dt[1:]):
    np.testing.assert_allclose(coarse / fine, 2.0, rtol=1e-4)
  # ratio_limit caps 1 - q^-(a+1) (TCM's 0.999 is reached at stage 9: 1 - 2^-10 = 0.99902).
  assert float(ect.mapping_ratio(8, 2.0, 0.999)) == pytest.approx(1 - 2**-9)
  assert float(ect.mapping_ratio(9, 2.0, 0.999)) == pytest.approx(0.999)
  np.testing.assert_allclose(_r(80.0, 20, ratio_limit=0.999), 80 * 0.999, rtol=1e-6)


def _teacher_and_batch(num=256):
  net = mlp.MLP(hidden=32, depth=2, emb_dim=16)
  teacher = Denoiser(net, 'edm', 1.0)

  @jax.jit
  def setup():  # one compiled program (eager ops each compile: slow on a loaded CPU)
    batch = {'x': jax.random.normal(jax.random.key(0), (num, 2)),
             'label': jnp.zeros((num,), jnp.int32)}
    params = jax.tree.map(lambda p: p + 0.1, teacher.init(jax.random.key(1), batch['x']))
    return batch, params

  return (teacher, *setup())


def test_student_starts_as_the_teacher_and_stage_zero_below_ln7_is_the_denoising_loss():
  teacher, batch, teacher_params = _teacher_and_batch()
  objective = ect.ECT(teacher)
  params = jax.jit(objective.init)(jax.random.key(2), batch, teacher_params)
  jax.tree.map(np.testing.assert_array_equal, params['student'], teacher_params)
  f = lambda x, sigma: teacher(teacher_params, x, sigma)

  @jax.jit
  def losses():
    # r = 0 below ln 7 at stage 0: the per-example loss is ||D(x0 + t z, t) - x0|| / t.
    x0 = batch['x']
    z = jax.random.normal(jax.random.key(3), x0.shape)
    t = jnp.geomspace(0.01, 1.9, x0.shape[0])
    r = ect.mapping_r(t, 0, q=2.0, k=8.0, b=1.0)
    denoising = jnp.linalg.norm(f(x0 + t[:, None] * z, t) - x0, axis=1) / t
    return jnp.max(r), ect.pair_loss(f, f, x0, z, t, r, 0.0), denoising

  max_r, per_example, denoising = losses()
  assert float(max_r) == 0.0
  np.testing.assert_allclose(per_example, denoising, rtol=1e-5)
  with pytest.raises(ValueError, match='init_from_teacher'):
    objective.init(jax.random.key(2), batch, None)


def _exact_f(x, t, scale=1.0):
  """The consistency function of x0 ~ N(m, diag(v)) (PF-ODE origin of x = x0 + t z, the EDM ODE):
  f*(x, t) = m + sqrt(v / (v + t^2)) (x - m); ``scale`` moves it off the optimum."""
  return MEAN + scale * jnp.sqrt(VAR / (VAR + t[:, None] ** 2)) * (x - MEAN)


def _whitened_normal(num, dim, seed):
  """``num`` points whose empirical mean is 0 and covariance I exactly: the sample mean of any
  quadratic function of them is its expectation under N(0, I)."""
  e = np.random.default_rng(seed).standard_normal((num, dim))
  e -= e.mean(axis=0)
  return e @ np.linalg.inv(np.linalg.cholesky(e.T @ e / num)).T


def test_consistency_bias_at_the_exact_consistency_function_halves_with_each_stage():
  # With a squared metric (pseudo-Huber with a large c: d ~ ||.||^2 / 2c) the expected gradient
  # at the exact f* is E[(f*(x_t, t) - f*(x_r, r)) . df/dscale] / (t - r). f* is affine in x and
  # E[x_r | x_t] is one Euler step of the PF-ODE, so this is the Euler step's consistency error
  # / (t - r) = O(t - r): it vanishes as dt -> 0, halving with each stage. The loss is quadratic
  # in (x0, z), so whitened samples give its expectation exactly (no Monte-Carlo error).
  num, c = 4096, 1e3
  e = _whitened_normal(num, 4, seed=0)
  x0 = jnp.asarray(MEAN + np.sqrt(VAR) * e[:, :2], jnp.float32)
  z = jnp.asarray(e[:, 2:], jnp.float32)

  def mean_gradient(t, stage):
    t = jnp.full((num,), t)
    r = ect.mapping_r(t, stage, q=2.0, k=8.0, b=1.0)
    f = lambda s: lambda x, sigma: _exact_f(x, sigma, s)
    loss = lambda s: 2 * c * jnp.mean(ect.pair_loss(f(s), f(s), x0, z, t, r, c))
    return float(jax.grad(loss)(1.0))

  for t in (0.5, 2.0):
    biases = np.array([mean_gradient(t, stage) for stage in range(2, 8)])
    print(f't = {t}: gradient at f* per stage 2-7:', biases, biases[:-1] / biases[1:])
    # Measured ratios between consecutive stages 2->3 ... 6->7: t = 0.5: 2.23, 2.12, 2.06,
    # 2.03, 2.01; t = 2: 2.44, 2.20, 2.10, 2.05, 2.03 (-> q = 2 as the O(dt^2) terms fade); the
    # bias at stage 7 is 2.5 % (t = 0.5) and 2.1 % (t = 2) of stage 2's. Bounds >= 20 % away.
    # (At t = 10 the bias, ~1e-4 at stage 2, reaches float32 round-off by stage 6.)
    np.testing.assert_array_less(1.6, biases[:-1] / biases[1:])
    assert np.all(biases[:-1] / biases[1:] < 3.0)
    assert abs(biases[-1]) < 0.05 * abs(biases[0])


def test_sampler_and_option_errors():
  teacher, batch, teacher_params = _teacher_and_batch(4)
  objective = ect.ECT(teacher, intermediate_sigmas=(0.821,))
  params = {'student': teacher_params}
  rng = jax.random.key(5)
  f = lambda x, sigma: teacher(teacher_params, x, sigma)
  sample = jax.jit(lambda: objective.sample(params, None, rng, None, (4, 2), 2))
  expected = jax.jit(lambda: samplers.multistep_sample(f, rng, (4, 2), (80.0, 0.821)))
  np.testing.assert_allclose(sample(), expected(), rtol=1e-6)
  with pytest.raises(ValueError, match='intermediate_sigmas'):
    objective.sample(params, None, rng, None, (4, 2), 3)
  for option, value in (('stage_steps', 0), ('q', 1.0), ('ratio_limit', 1.5), ('huber_c', -1.0)):
    with pytest.raises(ValueError, match=f'objective.{option}'):
      ect.ECT(teacher, **{option: value})
  config = configs.get_config('ect_gmm2d')
  config.objective.stage_steps = -3
  with pytest.raises(ValueError, match='objective.stage_steps'):
    objectives.make_objective(config)


# ---------------------------------------------------------------- ground truth on the 2-D mixture


@pytest.mark.slow
def test_short_run_from_an_edm_teacher_reaches_the_mixture(tmp_path):
  # ~2 min: a 1000-step EDM teacher (the gmm2d preset's 128 x 3 MLP; Heun-35 FD ~0.006), then
  # 1000 ECT steps in 5 stages of 200. Measured 1- / 2-step FD, seeds 0-3 (config.seed, for both
  # runs): 0.0027 / 0.00080, 0.0037 / 0.0011, 0.0022 / 0.0017, 0.00074 / 0.0025; the exact
  # teacher's Heun-35 0.00146, floor 0.00008. Bounds: 0.00146 + 0.003 = 0.0045 (22 % above the
  # largest 1-step value), 0.00146 + 0.0016 = 0.0031 (23 % above the largest 2-step value).
  edm_teacher = gmm2d_runs.train_edm_teacher(tmp_path / 'edm')
  fds, teacher_fd = gmm2d_runs.train_and_measure(
      tmp_path / 'ect', 'ect_gmm2d', 1000, (1, 2),
      overrides=(f'--config.teacher.workdir={edm_teacher}', *gmm2d_runs.SHORT_NETWORK,
                 '--config.objective.stage_steps=200'))
  assert fds[0] < teacher_fd + 0.003 and fds[1] < teacher_fd + 0.0016
