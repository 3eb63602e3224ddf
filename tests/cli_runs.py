"""The CLI as a subprocess on the tiny 2-D config (tests/tiny_config.py), for trainer tests."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(workdir, *overrides, devices=2, wait=True, env_extra=None, config=None):
  """``(returncode, stdout, stderr)`` of ``python -m fastgen.main`` on ``workdir``; with
  ``wait=False`` the running ``Popen``. ``devices`` simulated CPU devices: two by default, so the
  batch and state are sharded as on a multi-device run, at a fraction of the eight devices' cost
  (a 600-step tiny run took ~3x longer on eight). ``env_extra`` adds to the environment; a
  ``None`` value removes that variable."""
  env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
             TF_CPP_MIN_LOG_LEVEL='3', PYTHONPATH=REPO, **(env_extra or {}))
  env = {k: v for k, v in env.items() if v is not None}
  cmd = [sys.executable, '-m', 'fastgen.main',
         f'--config={config or os.path.join(REPO, "tests", "tiny_config.py")}',
         f'--workdir={workdir}', *overrides]
  proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  if not wait:
    return proc
  out, err = proc.communicate(timeout=300)
  return proc.returncode, out, err
