"""The XLA:CPU defaults fastgen sets on import (YNNPACK fusions off, LLVM -O2), unless the user
chose."""

import os
import subprocess
import sys

import jaxlib
import pytest

import fastgen

FLAG = fastgen.YNN_FUSION_FLAG
OPT = fastgen.OPT_LEVEL_FLAG
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _with_defaults(flags, version='0.10.2', keep_ynnpack=False, cpu_only=True):
  return fastgen.xla_flags_with_cpu_defaults(flags, version, keep_ynnpack, cpu_only)


def test_flags_are_added_once_after_the_users_flags():
  flags = '--xla_force_host_platform_device_count=8'
  added = _with_defaults(flags)
  assert added == f'{flags} {FLAG}= {OPT}=2'
  assert _with_defaults(added) == added
  assert _with_defaults('') == f'{FLAG}= {OPT}=2'


def test_the_optimization_level_is_left_alone_where_jax_can_use_an_accelerator():
  assert _with_defaults('', cpu_only=False) == f'{FLAG}='


def test_users_choice_and_unmeasured_versions_keep_the_flags():
  own = f'{FLAG}=reduce {OPT}=3'
  assert _with_defaults(own) == own
  assert _with_defaults('', keep_ynnpack=True) == f'{OPT}=2'
  assert _with_defaults(own, keep_ynnpack=True) == own
  # A child of a fastgen process inherits the added flags; FASTGEN_YNNPACK=1 still restores XLA's.
  inherited = f'--xla_force_host_platform_device_count=8 {FLAG}= {OPT}=2'
  assert (_with_defaults(inherited, keep_ynnpack=True)
          == f'--xla_force_host_platform_device_count=8 {OPT}=2')
  # XLA aborts on a flag it does not know: a jaxlib whose flags were not checked gets none.
  assert _with_defaults('', version='0.11.0') == ''


# The import's effect is checked where fastgen sets its defaults: a measured jaxlib.
measured_jaxlib = pytest.mark.skipif(
    not jaxlib.__version__.startswith(fastgen.CPU_DEFAULTS_VERSIONS),
    reason=f'jaxlib {jaxlib.__version__} keeps its defaults (tested above)')


def _python_output(code: str, env: dict) -> str:
  """The last stdout line of ``python -c code`` run in the checkout with ``env``."""
  out = subprocess.run([sys.executable, '-c', code], env={**env, 'PYTHONPATH': REPO}, cwd=REPO,
                       capture_output=True, text=True, timeout=120, check=True)
  return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ''


def _flags_after_import(platforms: str) -> str:
  env = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'FASTGEN_YNNPACK')}
  return _python_output('import os, fastgen; print(os.environ.get("XLA_FLAGS", ""))',
                        {**env, 'JAX_PLATFORMS': platforms})


@measured_jaxlib
def test_import_sets_the_optimization_level_only_for_a_cpu_only_jax():
  assert f'{OPT}=2' in _flags_after_import('cpu').split()
  assert OPT not in _flags_after_import('cuda,cpu')


def _compiles_to_ynnpack(env: dict) -> bool:
  """Whether a GroupNorm-like reduction compiled after ``import fastgen`` calls YNNPACK."""
  code = ('import fastgen, jax, jax.numpy as jnp\n'
          'f = jax.jit(lambda x: jnp.mean(jax.nn.silu(x) ** 2, axis=(1, 2)))\n'
          "print('ynn' in f.lower(jnp.ones((64, 16, 16, 32))).compile().as_text())\n")
  return _python_output(code, env) == 'True'


@measured_jaxlib
def test_import_turns_ynnpack_fusions_off_for_the_process():
  # XLA_FLAGS as this process has it: fastgen's flags already added.
  env = {k: v for k, v in os.environ.items() if k != 'FASTGEN_YNNPACK'}
  assert not _compiles_to_ynnpack(env)
  assert _compiles_to_ynnpack({**env, 'FASTGEN_YNNPACK': '1'})
