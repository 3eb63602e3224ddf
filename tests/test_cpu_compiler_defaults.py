"""The XLA:CPU default fastgen sets on import: YNNPACK fusions off, unless the user chose."""

import os
import subprocess
import sys

import pytest

import fastgen

FLAG = fastgen.YNN_FUSION_FLAG
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_flag_is_added_once_after_the_users_flags():
  flags = '--xla_force_host_platform_device_count=8'
  added = fastgen.xla_flags_with_cpu_defaults(flags, '0.10.2', keep_ynnpack=False)
  assert added == f'{flags} {FLAG}='
  assert fastgen.xla_flags_with_cpu_defaults(added, '0.10.2', keep_ynnpack=False) == added
  assert fastgen.xla_flags_with_cpu_defaults('', '0.10.2', keep_ynnpack=False) == f'{FLAG}='


def test_users_choice_and_unmeasured_versions_keep_the_flags():
  own = f'{FLAG}=reduce'
  assert fastgen.xla_flags_with_cpu_defaults(own, '0.10.2', keep_ynnpack=False) == own
  assert fastgen.xla_flags_with_cpu_defaults('', '0.10.2', keep_ynnpack=True) == ''
  assert fastgen.xla_flags_with_cpu_defaults(own, '0.10.2', keep_ynnpack=True) == own
  # A child of a fastgen process inherits the added flag; FASTGEN_YNNPACK=1 still restores XLA's.
  inherited = f'--xla_force_host_platform_device_count=8 {FLAG}='
  assert (fastgen.xla_flags_with_cpu_defaults(inherited, '0.10.2', keep_ynnpack=True)
          == '--xla_force_host_platform_device_count=8')
  # XLA aborts on a flag it does not know: a jaxlib whose flags were not checked gets none.
  assert fastgen.xla_flags_with_cpu_defaults('', '0.11.0', keep_ynnpack=False) == ''


def _compiles_to_ynnpack(env: dict) -> bool:
  """Whether a GroupNorm-like reduction compiled after ``import fastgen`` calls YNNPACK."""
  code = ('import fastgen, jax, jax.numpy as jnp\n'
          'f = jax.jit(lambda x: jnp.mean(jax.nn.silu(x) ** 2, axis=(1, 2)))\n'
          "print('ynn' in f.lower(jnp.ones((64, 16, 16, 32))).compile().as_text())\n")
  out = subprocess.run([sys.executable, '-c', code], env=env, cwd=REPO, capture_output=True,
                       text=True, timeout=120, check=True)
  return out.stdout.strip().splitlines()[-1] == 'True'


def test_import_turns_ynnpack_fusions_off_for_the_process():
  import jaxlib  # pylint: disable=import-outside-toplevel
  if not jaxlib.__version__.startswith(fastgen.YNN_FUSION_FLAG_VERSIONS):
    pytest.skip(f'jaxlib {jaxlib.__version__} keeps its defaults (tested above)')
  env = {k: v for k, v in os.environ.items() if k != 'FASTGEN_YNNPACK'}
  env['PYTHONPATH'] = REPO  # XLA_FLAGS as this process has it: fastgen's flag already added
  assert not _compiles_to_ynnpack(env)
  assert _compiles_to_ynnpack({**env, 'FASTGEN_YNNPACK': '1'})
