"""fastgen: turn slow diffusion and flow models into 1-4-step generators, in JAX.

Importing fastgen sets two XLA:CPU compiler defaults (:func:`xla_flags_with_cpu_defaults`) for
JAX backends started after the import; GPU and TPU compilation is unaffected.
"""

import importlib.metadata
import importlib.util
import os

__version__ = '0.1.0'

YNN_FUSION_FLAG = '--xla_cpu_experimental_ynn_fusion_type'
OPT_LEVEL_FLAG = '--xla_backend_optimization_level'
# jaxlib versions whose XLA has the flags and where their effect was measured
# (docs/performance.md, the sections "XLA:CPU's LLVM optimization level" and "XLA:CPU's YNNPACK
# fusions"); XLA aborts on a flag it does not know, so other versions keep XLA's defaults.
CPU_DEFAULTS_VERSIONS = ('0.10.',)


def xla_flags_with_cpu_defaults(flags: str, jaxlib_version: str, keep_ynnpack: bool,
                                cpu_only: bool) -> str:
  """``flags`` (an ``XLA_FLAGS`` value) with fastgen's XLA:CPU defaults added, each unless the
  flags already set it, and none where jaxlib is not a measured version:

  * ``--xla_cpu_experimental_ynn_fusion_type=`` (empty): XLA:CPU compiles convolutions,
    reductions and matrix products with its own kernels instead of YNNPACK library calls:
    measured 1.14-1.33x faster on the digits U-Net's train steps and sampler, 1.06-1.43x on gmm2d
    MLP steps, 0.84x on a 32x32 U-Net. ``keep_ynnpack`` (the environment's
    ``FASTGEN_YNNPACK=1``) removes the empty setting instead, restoring XLA's default.
  * ``--xla_backend_optimization_level=2`` (XLA's default is 3): LLVM's -O2 pipeline for the
    generated kernels: train steps compile 11-16% faster, the digits U-Net's train steps and
    sampler run 1.14-1.26x faster, the 32x32 U-Net's step 1.05x.
    The flag also sets GPU code generation's level, so it is added only where ``cpu_only``
    (JAX can use no other backend here); ``--xla_backend_optimization_level=3`` restores XLA's.

  Measurements: docs/performance.md, "XLA:CPU's LLVM optimization level" and "XLA:CPU's
  YNNPACK fusions"."""
  if keep_ynnpack:  # also drops the flag a parent fastgen process added to its children's env
    flags = ' '.join(f for f in flags.split() if f != f'{YNN_FUSION_FLAG}=')
  if not jaxlib_version.startswith(CPU_DEFAULTS_VERSIONS):
    return flags
  defaults = [] if keep_ynnpack else [f'{YNN_FUSION_FLAG}=']
  defaults += [f'{OPT_LEVEL_FLAG}=2'] if cpu_only else []
  added = [d for d in defaults if d.split('=')[0] not in flags]
  return ' '.join([flags, *added]).strip()


def _cpu_only() -> bool:
  """Whether JAX can run on nothing but the CPU here: ``JAX_PLATFORMS=cpu``, or neither a PJRT
  plugin (GPU; found as JAX finds them: the ``jax_plugins`` entry points and namespace package)
  nor libtpu is installed."""
  platforms = os.environ.get('JAX_PLATFORMS', '').strip()
  if platforms:
    return platforms == 'cpu'
  return not (importlib.metadata.entry_points(group='jax_plugins')
              or importlib.util.find_spec('jax_plugins')
              or importlib.util.find_spec('libtpu') or os.environ.get('TPU_LIBRARY_PATH'))


def _set_cpu_compiler_defaults() -> None:
  try:
    jaxlib_version = importlib.metadata.version('jaxlib')
  except importlib.metadata.PackageNotFoundError:
    return
  flags = os.environ.get('XLA_FLAGS', '')
  new_flags = xla_flags_with_cpu_defaults(
      flags, jaxlib_version, keep_ynnpack=os.environ.get('FASTGEN_YNNPACK') == '1',
      cpu_only=_cpu_only())
  if new_flags != flags:
    os.environ['XLA_FLAGS'] = new_flags


_set_cpu_compiler_defaults()
