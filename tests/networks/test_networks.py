"""Raw networks: call contract, null label, dropout, bf16, registry, EDM sizes and names."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from fastgen import denoiser as denoiser_lib
from fastgen import diffusion
from fastgen import networks
from fastgen.networks import unet

NUM_CLASSES = 3
TINY = {
    'mlp': dict(name='mlp', hidden=32, depth=2, emb_dim=16),
    'unet': dict(name='unet', img_resolution=8, in_channels=1, model_channels=16,
                 channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4]),
}
SHAPES = {'mlp': (4, 2), 'unet': (4, 8, 8, 1)}
# EDM CIFAR-10 DDPM++ (EDM Table 7); the count is EDM's SongUNet tallied layer by layer, without
# its 1,152-parameter map_augment (the paper's 55.73M includes it).
CIFAR = dict(name='unet', img_resolution=32, in_channels=3, model_channels=128,
             channel_mult=(2, 2, 2), num_blocks=4, attn_resolutions=(16,), dropout=0.13)
EDM_CIFAR_UNCOND_PARAMS = 55_732_739


def _build(kind, **overrides):
  return networks.build_network({**TINY[kind], **overrides})


def _init(net, shape, seed=0):
  """Random parameters of the right shapes (numpy, so no init compile): GroupNorm/LayerNorm scales
  near one, everything else N(0, 0.1^2), so near-zero-initialised output layers hide nothing."""
  shapes = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros(shape), jnp.zeros(shape[:1]))
  rng = np.random.default_rng(seed)
  return jax.tree.map_with_path(
      lambda path, p: jnp.asarray((path[-1].key == 'scale') + 0.1 * rng.normal(size=p.shape),
                                  jnp.float32), shapes['params'])


def _inputs(shape):
  x = jax.random.normal(jax.random.key(2), shape)
  return x, jnp.linspace(-1.5, 1.0, shape[0])


@pytest.mark.parametrize('kind', ['mlp', 'unet'])
@pytest.mark.parametrize('num_classes', [0, NUM_CLASSES])
def test_output_shape_and_dtype(kind, num_classes):
  net = _build(kind, num_classes=num_classes)
  params = _init(net, SHAPES[kind])
  x, noise_cond = _inputs(SHAPES[kind])
  labels = jnp.arange(SHAPES[kind][0]) % (num_classes + 1)
  out = net.apply({'params': params}, x, noise_cond, labels, train=False)
  assert out.shape == x.shape and out.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(out)))
  assert ('map_label' in params) == bool(num_classes)


@pytest.mark.parametrize('kind', ['mlp', 'unet'])
def test_null_label_embeds_as_zero(kind):
  cond = _build(kind, num_classes=NUM_CLASSES)
  params = _init(cond, SHAPES[kind])
  x, noise_cond = _inputs(SHAPES[kind])
  null = jnp.full(x.shape[:1], NUM_CLASSES)
  out_null = cond.apply({'params': params}, x, noise_cond, null)
  out_none = cond.apply({'params': params}, x, noise_cond, None)
  # The unconditional net with the same weights is the conditional net with a zero class embedding.
  uncond_params = {k: v for k, v in params.items() if k != 'map_label'}
  out_uncond = _build(kind).apply({'params': uncond_params}, x, noise_cond, None)
  np.testing.assert_allclose(out_null, out_none, atol=1e-6)
  np.testing.assert_allclose(out_null, out_uncond, atol=1e-6)
  out_class0 = cond.apply({'params': params}, x, noise_cond, jnp.zeros_like(null))
  assert float(jnp.max(jnp.abs(out_class0 - out_null))) > 1e-3


@pytest.mark.parametrize('kind', ['mlp', 'unet'])
def test_dropout_only_in_training(kind):
  net = _build(kind, dropout=0.5)
  params = _init(net, SHAPES[kind])
  x, noise_cond = _inputs(SHAPES[kind])
  run = lambda train, seed: net.apply({'params': params}, x, noise_cond, None, train=train,
                                      rngs={'dropout': jax.random.key(seed)})
  np.testing.assert_array_equal(run(False, 0), run(False, 1))
  np.testing.assert_array_equal(run(False, 0), net.apply({'params': params}, x, noise_cond))
  assert float(jnp.max(jnp.abs(run(True, 0) - run(True, 1)))) > 1e-3
  assert float(jnp.max(jnp.abs(run(True, 0) - run(False, 0)))) > 1e-3


@pytest.mark.parametrize('parameterization', denoiser_lib.PARAMETERIZATIONS)
def test_velocity_keeps_dropout_for_every_parameterization(parameterization):
  """Denoiser.velocity (the student of reflow, InstaFlow, SlimFlow) trains with dropout whatever
  the parameterization: train=True with rng k gives a random velocity, the one of D(x, sigma;
  train=True, k) for x = x_t / (1 - t), sigma = t / (1 - t); train=False is deterministic."""
  net = _build('mlp', dropout=0.5)
  params = _init(net, SHAPES['mlp'])
  denoiser = denoiser_lib.Denoiser(net, parameterization)
  x_t, _ = _inputs(SHAPES['mlp'])
  t = jnp.array([0.1, 0.3, 0.6, 0.9])
  velocity = lambda train, seed: denoiser.velocity(params, x_t, t, train=train,
                                                   rng=jax.random.key(seed))
  assert float(jnp.max(jnp.abs(velocity(True, 0) - velocity(True, 1)))) > 1e-3
  assert float(jnp.max(jnp.abs(velocity(True, 0) - velocity(False, 0)))) > 1e-3
  np.testing.assert_array_equal(velocity(False, 0), velocity(False, 1))
  x0 = denoiser(params, diffusion.flow_to_edm(x_t, t), diffusion.flow_t_to_sigma(t), train=True,
                rng=jax.random.key(0))
  np.testing.assert_allclose(velocity(True, 0), diffusion.x0_to_velocity(x_t, t, x0),
                             rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('kind', ['mlp', 'unet'])
def test_bfloat16_compute_keeps_float32_params(kind):
  f32 = _build(kind, num_classes=NUM_CLASSES)
  bf16 = _build(kind, num_classes=NUM_CLASSES, dtype='bfloat16')
  shape = SHAPES[kind]
  init = jax.eval_shape(bf16.init, jax.random.key(0), jnp.zeros(shape), jnp.zeros(shape[:1]))
  assert {p.dtype for p in jax.tree.leaves(init)} == {jnp.dtype(jnp.float32)}
  params = _init(f32, shape)
  x, noise_cond = _inputs(shape)
  labels = jnp.arange(shape[0]) % NUM_CLASSES
  ref = f32.apply({'params': params}, x, noise_cond, labels)
  out = bf16.apply({'params': params}, x, noise_cond, labels)
  assert out.dtype == jnp.float32
  rel = float(jnp.linalg.norm(out - ref) / jnp.linalg.norm(ref))
  assert rel < 0.05, rel


def test_rematerialised_unet_has_the_same_gradients_and_recomputes_blocks():
  plain = _build('unet', num_classes=NUM_CLASSES, dropout=0.1)
  remat = _build('unet', num_classes=NUM_CLASSES, dropout=0.1, remat=True)
  shape = SHAPES['unet']
  params = _init(plain, shape)
  x, noise_cond = _inputs(shape)
  labels = jnp.arange(shape[0]) % NUM_CLASSES

  def grad(net):
    loss = lambda p: jnp.mean(net.apply({'params': p}, x, noise_cond, labels, train=True,
                                        rngs={'dropout': jax.random.key(2)}) ** 2)
    return jax.grad(loss), jax.jit(jax.grad(loss))(params)

  (_, expected), (remat_grad, actual) = grad(plain), grad(remat)
  for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(actual), strict=True):
    # Equal up to float32 re-association in the recomputed forward pass.
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5 * float(jnp.max(jnp.abs(a))))
  assert 'remat' in str(jax.make_jaxpr(remat_grad)(params))


def test_registry_builds_from_config_dict():
  cfg = ml_collections.ConfigDict(TINY['unet'])
  net = networks.build_network(cfg)
  assert isinstance(net, unet.SongUNet)
  assert net.channel_mult == (1, 2) and net.attn_resolutions == (4,)
  assert net.out_channels is None and net.dtype == jnp.float32


def test_registry_errors():
  with pytest.raises(ValueError, match=r"'resnet'.*known: mlp, unet"):
    networks.build_network({'name': 'resnet'})
  with pytest.raises(ValueError, match=r'widht.*accepted: hidden, depth, emb_dim'):
    networks.build_network({'name': 'mlp', 'widht': 3})


def test_positional_embedding_matches_edm():
  """EDM PositionalEmbedding(endpoint=True): frequencies run from 1 down to exactly 1/10000."""
  emb = unet.positional_embedding(jnp.array([0.0, 2.0]), 8, endpoint=True)
  freqs = 10000.0 ** -(np.arange(4) / 3)
  np.testing.assert_allclose(emb[1], np.concatenate([np.cos(2 * freqs), np.sin(2 * freqs)]),
                             rtol=1e-6)
  np.testing.assert_allclose(emb[0], [1, 1, 1, 1, 0, 0, 0, 0])


@pytest.fixture(scope='module')
def cifar_shapes():
  """Parameter shapes of the EDM CIFAR-10 DDPM++ net, unconditional and 10-class (no FLOPs)."""
  def shapes(num_classes):
    net = networks.build_network({**CIFAR, 'num_classes': num_classes})
    x, s = jnp.zeros((1, 32, 32, 3)), jnp.zeros((1,))
    return jax.eval_shape(lambda: net.init(jax.random.key(0), x, s, None))['params']
  return shapes(0), shapes(10)


def test_cifar_param_count_matches_edm(cifar_shapes):
  uncond, cond = (networks.count_params(p) for p in cifar_shapes)
  print(f'DDPM++ CIFAR-10: {uncond:,} unconditional, {cond:,} conditional parameters')
  assert uncond == EDM_CIFAR_UNCOND_PARAMS
  assert abs(uncond - 55.73e6) / 55.73e6 < 0.01
  assert cond - uncond == 10 * 128  # map_label: one-hot -> noise channels, no bias.


def test_cifar_parameter_names_mirror_edm(cifar_shapes):
  uncond, cond = cifar_shapes
  expected = {  # Flax path -> shape; EDM names with '.' between ModuleDict and key -> '_'.
      ('map_layer0', 'kernel'): (128, 512),
      ('map_layer1', 'bias'): (512,),
      ('enc_32x32_conv', 'kernel'): (3, 3, 3, 128),
      ('enc_32x32_block0', 'skip', 'kernel'): (1, 1, 128, 256),
      ('enc_16x16_down', 'conv0', 'kernel'): (3, 3, 256, 256),
      ('enc_16x16_down', 'skip', 'kernel'): (1, 1, 256, 256),
      ('enc_16x16_block0', 'qkv', 'kernel'): (1, 1, 256, 768),
      ('enc_16x16_block0', 'proj', 'bias'): (256,),
      ('enc_8x8_block3', 'affine', 'kernel'): (512, 256),
      ('dec_8x8_in0', 'norm2', 'scale'): (256,),
      ('dec_8x8_in1', 'norm1', 'bias'): (256,),
      ('dec_16x16_up', 'conv1', 'kernel'): (3, 3, 256, 256),
      ('dec_16x16_block4', 'qkv', 'bias'): (768,),
      ('dec_32x32_block0', 'conv0', 'kernel'): (3, 3, 512, 256),
      ('dec_32x32_aux_norm', 'scale'): (256,),
      ('dec_32x32_aux_conv', 'kernel'): (3, 3, 256, 3),
  }
  for path, shape in expected.items():
    leaf = uncond
    for key in path:
      leaf = leaf[key]
    assert leaf.shape == shape, path
  assert 'qkv' not in uncond['dec_16x16_block3'] and 'qkv' not in uncond['enc_8x8_block0']
  assert set(cond['map_label']) == {'kernel'} and cond['map_label']['kernel'].shape == (10, 128)


@pytest.mark.parametrize('kind', ['mlp', 'unet'])
def test_denoiser_end_to_end(kind):
  """Both parameterizations of fastgen.denoiser run, train and differentiate on the real init."""
  net = _build(kind, num_classes=NUM_CLASSES, dropout=0.1)
  shape = SHAPES[kind]
  x0 = jax.random.normal(jax.random.key(3), shape)
  labels = jnp.arange(shape[0]) % (NUM_CLASSES + 1)
  params = jax.jit(denoiser_lib.Denoiser(net).init)(jax.random.key(0), x0, labels)
  sigma = jnp.array([0.01, 0.5, 2.0, 80.0])
  x = x0 + diffusion.expand_like(sigma, x0) * jax.random.normal(jax.random.key(4), shape)

  # The two a network is trained in ('vp' / 've' are for imported EDM networks, tested there).
  denoisers = [denoiser_lib.Denoiser(net, p) for p in ('edm', 'flow')]

  def loss(p):  # Both parameterizations in one compile; dropout on.
    x0_hats = [d(p, x, sigma, labels, train=True, rng=jax.random.key(5)) for d in denoisers]
    return sum(jnp.mean((x0_hat - x0) ** 2) for x0_hat in x0_hats), x0_hats

  (value, x0_hats), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  assert np.isfinite(float(value))
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
  # Near-zero output layers: the EDM denoiser starts as c_skip x (EDM Eq. 7), the flow one as x_t.
  sd = denoisers[0].sigma_data
  c_skip = sd**2 / (sigma**2 + sd**2)
  np.testing.assert_allclose(x0_hats[0], diffusion.expand_like(c_skip, x) * x, atol=1e-3)
  np.testing.assert_allclose(x0_hats[1], diffusion.edm_to_flow(x, sigma), atol=1e-3)


def test_pixel_norm_gives_unit_rms_channels_and_ignores_magnitude():
  x = jax.random.normal(jax.random.key(0), (3, 1, 1, 8)) * jnp.array([0.1, 1.0, 30.0])[:, None,
                                                                                        None, None]
  y = unet.pixel_norm(x)
  np.testing.assert_allclose(jnp.sqrt(jnp.mean(y**2, axis=-1)), 1.0, rtol=1e-5)
  np.testing.assert_allclose(unet.pixel_norm(7.0 * x), y, rtol=1e-5)


def _scale_affine(params, factor):
  """Every block's embedding projection (``affine``: kernel and bias) times ``factor``."""
  return jax.tree.map_with_path(
      lambda path, p: p * factor if any(k.key == 'affine' for k in path) else p, params)


@pytest.mark.parametrize('double_norm', [False, True])
def test_double_norm_makes_blocks_blind_to_the_embedding_scale(double_norm):
  """sCM's adaptive double normalization: each block's (scale, shift) = affine(emb) is pixel-
  normalized, so scaling every affine layer leaves the output as it is; EDM's additive embedding
  (the default) sees it. The affine layer doubles its outputs for (scale, shift)."""
  net = _build('unet', num_classes=NUM_CLASSES, double_norm=double_norm)
  shape = SHAPES['unet']
  params = _init(net, shape)
  x, noise_cond = _inputs(shape)
  labels = jnp.arange(shape[0]) % NUM_CLASSES
  apply = lambda p: net.apply({'params': p}, x, noise_cond, labels, train=False)
  out, scaled = apply(params), apply(_scale_affine(params, 3.0))
  block = params['enc_8x8_block0']
  assert block['affine']['kernel'].shape[-1] == block['conv0']['kernel'].shape[-1] * (
      2 if double_norm else 1)
  if double_norm:
    np.testing.assert_allclose(scaled, out, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(out))))
  else:
    assert float(jnp.max(jnp.abs(scaled - out))) > 1e-2 * float(jnp.max(jnp.abs(out)))



@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize('size', [8, 3, 2, 1])
def test_conv_has_flax_convs_parameters_outputs_and_derivatives(size, dtype):
  """unet.Conv2d (a product with ones for its bias gradient on the CPU; on maps with no more
  positions than the 3x3 kernel has taps, one matrix product) against nn.Conv: the same
  parameters; outputs, gradients and a forward-mode derivative equal up to float32 summation
  order, and outputs and the kernel gradient bit for bit where it convolves."""
  x = jax.random.normal(jax.random.key(0), (4, size, size, 5))
  flax_conv = nn.Conv(7, (3, 3), padding=((1, 1), (1, 1)), kernel_init=unet.INIT,
                      bias_init=nn.initializers.zeros, dtype=dtype, param_dtype=jnp.float32)
  conv = unet.conv(7, 3, dtype, 'conv')
  params = flax_conv.init(jax.random.key(1), x)
  assert jax.tree.map(jnp.shape, conv.init(jax.random.key(1), x)) == jax.tree.map(
      jnp.shape, params)
  params = jax.tree.map(lambda p: p + jax.random.normal(jax.random.key(2), p.shape), params)
  as_matrix = jax.default_backend() == 'cpu' and size * size <= 9
  primitives = {e.primitive.name for e in jax.make_jaxpr(conv.apply)(params, x).eqns}
  assert ('conv_general_dilated' in primitives) != as_matrix
  ours, theirs = conv.apply(params, x), flax_conv.apply(params, x)
  assert ours.dtype == theirs.dtype == dtype
  if not as_matrix:
    np.testing.assert_array_equal(ours, theirs)
  tol = dict(rtol=1e-5, atol=1e-5) if dtype == jnp.float32 else dict(rtol=2.0**-7, atol=2.0**-5)
  np.testing.assert_allclose(ours.astype(jnp.float32), theirs.astype(jnp.float32), **tol)
  if dtype == jnp.float32:
    loss = lambda m: lambda p, x: jnp.sum(jnp.sin(m.apply(p, x)))
    grads = [jax.grad(loss(m), argnums=(0, 1))(params, x) for m in (conv, flax_conv)]
    if not as_matrix:
      np.testing.assert_array_equal(grads[0][0]['params']['kernel'],
                                    grads[1][0]['params']['kernel'])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), *grads)
    x_dot = jax.random.normal(jax.random.key(3), x.shape)
    tangents = [jax.jvp(lambda x, m=m: m.apply(params, x), (x,), (x_dot,))[1]
                for m in (conv, flax_conv)]
    np.testing.assert_allclose(tangents[0], tangents[1], rtol=1e-5, atol=1e-5)


def test_conv_as_matrix_holds_each_kernel_tap_exactly():
  """conv_as_matrix's matrix entries are single kernel taps (exact in bfloat16), and it equals
  the convolution for other kernel sizes and paddings."""
  kernel = jax.random.normal(jax.random.key(0), (3, 3, 2, 4)).astype(jnp.bfloat16)
  x = jnp.zeros((1, 2, 2, 2), jnp.bfloat16).at[0, 0, 1, 1].set(1)  # one input position, one channel
  y = unet.conv_as_matrix(x, kernel, 1)
  # Output (i, j) reads input (i + a - 1, j + b - 1) through tap (a, b): input (0, 1) through
  # tap (1 - i, 2 - j).
  for i, j in np.ndindex(2, 2):
    np.testing.assert_array_equal(y[0, i, j], kernel[1 - i, 2 - j, 1])
  for size, k, pad in [(2, 3, 1), (3, 3, 0), (2, 5, 2), (4, 5, 1)]:
    x = jax.random.normal(jax.random.key(1), (3, size, size, 2))
    kernel = jax.random.normal(jax.random.key(2), (k, k, 2, 4))
    expected = jax.lax.conv_general_dilated(x, kernel, (1, 1), ((pad, pad),) * 2,
                                            dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    np.testing.assert_allclose(unet.conv_as_matrix(x, kernel, pad), expected, rtol=1e-5,
                               atol=1e-5)


def test_channel_bias_gradient_is_the_float32_sum_rounded_once():
  """In bfloat16 the bias gradient is the cotangent's sum over batch and positions taken in
  float32 and rounded to bfloat16 once (equal up to float32 summation order: 1 bf16 ulp)."""
  g = jax.random.normal(jax.random.key(0), (16, 8, 8, 6)).astype(jnp.bfloat16)
  y, bias = jnp.zeros_like(g), jnp.zeros((6,), jnp.bfloat16)
  _, vjp = jax.vjp(unet.add_channel_bias, y, bias)
  grad_y, grad_bias = vjp(g)
  np.testing.assert_array_equal(grad_y, g)
  exact = jnp.sum(g.astype(jnp.float32), axis=(0, 1, 2))
  np.testing.assert_allclose(grad_bias.astype(jnp.float32), exact,
                             rtol=2.0**-8, atol=0)


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize('size', [8, 16])
def test_group_norm_has_flax_group_norms_parameters_outputs_and_derivatives(size, dtype):
  """unet.GroupNorm against nn.GroupNorm: the same parameters; on maps below
  PRODUCT_MIN_POSITIONS the same outputs bit for bit; from there on (sums over positions as
  products with ones on the CPU) outputs, gradients and a forward-mode derivative equal up to
  float32 summation order, on an input with a large mean (where Var = E[x^2] - E[x]^2 loses
  digits)."""
  assert (size * size >= unet.PRODUCT_MIN_POSITIONS) == (size == 16)
  x = 3.0 + 2.0 * jax.random.normal(jax.random.key(0), (4, size, size, 32))
  flax_norm = nn.GroupNorm(num_groups=8, epsilon=unet.NORM_EPS, dtype=dtype,
                           param_dtype=jnp.float32)
  norm = unet.group_norm(32, dtype, 'norm')
  params = flax_norm.init(jax.random.key(1), x)
  assert jax.tree.map(jnp.shape, norm.init(jax.random.key(1), x)) == jax.tree.map(
      jnp.shape, params)
  params = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.key(2), p.shape), params)
  x = x.astype(dtype)
  ours, theirs = norm.apply(params, x), flax_norm.apply(params, x)
  assert ours.dtype == theirs.dtype == dtype
  if size * size < unet.PRODUCT_MIN_POSITIONS:
    np.testing.assert_array_equal(ours, theirs)
  tol = dict(rtol=1e-5, atol=1e-5) if dtype == jnp.float32 else dict(rtol=2.0**-7, atol=2.0**-7)
  np.testing.assert_allclose(ours.astype(jnp.float32), theirs.astype(jnp.float32), **tol)
  if dtype == jnp.float32:
    loss = lambda m: lambda p, x: jnp.sum(jnp.sin(m.apply(p, x)) * jnp.arange(32.0))
    grads = [jax.grad(loss(m), argnums=(0, 1))(params, x) for m in (norm, flax_norm)]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), *grads)
    x_dot = jax.random.normal(jax.random.key(3), x.shape)
    tangents = [jax.jvp(lambda x, m=m: m.apply(params, x), (x,), (x_dot,))[1]
                for m in (norm, flax_norm)]
    np.testing.assert_allclose(tangents[0], tangents[1], rtol=1e-4, atol=1e-4)
