"""Model FLOPs of a JAX function, counted on its jaxpr: the numerator of MFU.

Counts the multiply-adds of every matrix product (``dot_general``: 2 x output size x contracted
size) and convolution (``conv_general_dilated``: 2 x output size x kernel window x input features
per group), through nested jaxprs (jit, remat, custom derivatives, cond: the costliest branch,
scan: times its length). Elementwise work, reductions and random-number generation are not model
FLOPs and are left out, as in the MFU of PaLM (Chowdhery et al. 2022, App. B). The count is the
same on every backend (XLA's cost analysis of a compiled GPU program sees cuDNN convolutions as
opaque custom calls, and counts them as zero).
"""

import math

import jax
from jax.extend import core as jax_core


def _dot_flops(eqn) -> float:
  (contract_lhs, _), _ = eqn.params['dimension_numbers']
  lhs_shape = eqn.invars[0].aval.shape
  contracted = math.prod(lhs_shape[d] for d in contract_lhs)
  return 2.0 * math.prod(eqn.outvars[0].aval.shape) * contracted


def _conv_flops(eqn) -> float:
  rhs_spec = eqn.params['dimension_numbers'].rhs_spec  # (out features, in features, *spatial)
  rhs_shape = eqn.invars[1].aval.shape
  window = math.prod(rhs_shape[d] for d in rhs_spec[2:])
  return 2.0 * math.prod(eqn.outvars[0].aval.shape) * window * rhs_shape[rhs_spec[1]]


def _sub_jaxprs(value):
  if isinstance(value, jax_core.ClosedJaxpr):
    yield value.jaxpr
  elif isinstance(value, jax_core.Jaxpr):
    yield value
  elif isinstance(value, (tuple, list)):
    for item in value:
      yield from _sub_jaxprs(item)


def jaxpr_flops(jaxpr) -> float:
  total = 0.0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == 'dot_general':
      total += _dot_flops(eqn)
    elif name == 'conv_general_dilated':
      total += _conv_flops(eqn)
    elif name == 'cond':
      total += max(jaxpr_flops(branch.jaxpr) for branch in eqn.params['branches'])
    elif name == 'scan':
      total += eqn.params['length'] * jaxpr_flops(eqn.params['jaxpr'].jaxpr)
    else:
      for value in eqn.params.values():
        for sub in _sub_jaxprs(value):
          total += jaxpr_flops(sub)
  return total


def model_flops(fn, *args) -> float:
  """Matrix-product and convolution FLOPs of one call ``fn(*args)`` (arrays or ShapeDtypeStructs)."""
  return jaxpr_flops(jax.make_jaxpr(fn)(*args).jaxpr)
