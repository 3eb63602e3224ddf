"""The MFU numerator: model FLOPs counted on the jaxpr, exact on known products and convolutions."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'experiments'))
import flop_count  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_matmul_conv_and_their_gradients_are_counted_exactly():
  a, b = jnp.ones((8, 16)), jnp.ones((16, 32))
  assert flop_count.model_flops(jnp.dot, a, b) == 2 * 8 * 16 * 32
  x, k = jnp.ones((2, 10, 10, 3)), jnp.ones((3, 3, 3, 5))  # NHWC, HWIO, 'SAME'
  conv = lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), 'SAME',
                                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  forward = 2 * (2 * 10 * 10 * 5) * (3 * 3 * 3)
  assert flop_count.model_flops(conv, x, k) == forward
  # Reverse mode w.r.t. both operands: forward + input gradient + kernel gradient = 3x forward.
  loss = lambda x, k: jnp.sum(conv(x, k))
  assert flop_count.model_flops(jax.grad(loss, argnums=(0, 1)), x, k) == 3 * forward


def test_nested_jit_scan_and_cond_are_followed():
  a = jnp.ones((4, 4))
  matmul = 2 * 4 * 4 * 4
  scanned = lambda a: jax.lax.scan(lambda c, _: (jax.jit(jnp.dot)(c, a), None), a, None,
                                   length=5)[0]
  assert flop_count.model_flops(scanned, a) == 5 * matmul
  branchy = lambda p, a: jax.lax.cond(p, lambda a: a @ a @ a, lambda a: a, a)
  assert flop_count.model_flops(branchy, np.bool_(True), a) == 2 * matmul  # costliest branch
