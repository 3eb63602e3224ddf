"""fastgen: turn slow diffusion and flow models into 1-4-step generators, in JAX.

Importing fastgen sets one XLA:CPU compiler default (:func:`xla_flags_with_cpu_defaults`) for
JAX backends started after the import; GPU and TPU compilation is unaffected.
"""

import importlib.metadata
import os

__version__ = '0.1.0'

YNN_FUSION_FLAG = '--xla_cpu_experimental_ynn_fusion_type'
# jaxlib versions whose XLA has the flag and where its effect was measured (docs/performance.md,
# "XLA:CPU's YNNPACK fusions"); XLA aborts on a flag it does not know, so others keep defaults.
YNN_FUSION_FLAG_VERSIONS = ('0.10.',)


def xla_flags_with_cpu_defaults(flags: str, jaxlib_version: str, keep_ynnpack: bool) -> str:
  """``flags`` (an ``XLA_FLAGS`` value) with ``--xla_cpu_experimental_ynn_fusion_type=`` added:
  XLA:CPU then compiles convolutions, reductions and matrix products with its own kernels instead
  of YNNPACK library calls: measured 1.14-1.33x faster on the digits U-Net's train steps and
  sampler, 1.06-1.43x on gmm2d MLP steps, 0.84x on a 32x32 U-Net (docs/performance.md).
  Unchanged where the flags already set it or jaxlib is not a measured version;
  ``keep_ynnpack`` (the environment's ``FASTGEN_YNNPACK=1``) removes the empty setting instead,
  restoring XLA's default."""
  if keep_ynnpack:  # also drops the flag a parent fastgen process added to its children's env
    return ' '.join(f for f in flags.split() if f != f'{YNN_FUSION_FLAG}=')
  if YNN_FUSION_FLAG in flags or not jaxlib_version.startswith(YNN_FUSION_FLAG_VERSIONS):
    return flags
  return f'{flags} {YNN_FUSION_FLAG}='.strip()


def _set_cpu_compiler_defaults() -> None:
  try:
    jaxlib_version = importlib.metadata.version('jaxlib')
  except importlib.metadata.PackageNotFoundError:
    return
  flags = os.environ.get('XLA_FLAGS', '')
  new_flags = xla_flags_with_cpu_defaults(flags, jaxlib_version,
                                          keep_ynnpack=os.environ.get('FASTGEN_YNNPACK') == '1')
  if new_flags != flags:
    os.environ['XLA_FLAGS'] = new_flags


_set_cpu_compiler_defaults()
