"""The CLI's output: at the default verbosity only fastgen's own lines (the progress line among
them), no TensorFlow or absl pre-init lines and no orbax INFO lines; --verbosity=1 shows those."""

import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASTGEN_FILES = {name for _, _, names in os.walk(os.path.join(REPO, 'fastgen')) for name in names
                 if name.endswith('.py')}
LOG_LINE = re.compile(r'^[IWEF]\d{4} [\d:.]+\s+\d+ ([\w.]+):\d+\] ')


def _run(workdir, *flags):
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=1', PYTHONPATH=REPO)
  env.pop('TF_CPP_MIN_LOG_LEVEL', None)
  proc = subprocess.run(
      [sys.executable, '-m', 'fastgen.main', f'--config={REPO}/tests/tiny_config.py',
       f'--workdir={workdir}', '--config.train.num_steps=20', *flags],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return (proc.stdout + proc.stderr).splitlines()


def test_default_output_is_fastgen_lines_only_and_verbosity_shows_the_libraries(tmp_path):
  lines = _run(tmp_path / 'quiet')
  assert any(re.search(r'train\.py:\d+\] step 20/20 .* steps/s  ETA ', line) for line in lines)
  files = [LOG_LINE.match(line) for line in lines]
  assert all(files), [line for line, f in zip(lines, files) if not f]  # nothing but log lines
  assert {f.group(1) for f in files} <= FASTGEN_FILES, lines
  verbose = _run(tmp_path / 'verbose', '--verbosity=1')
  library_lines = [line for line in verbose if (m := LOG_LINE.match(line))
                   and m.group(1) not in FASTGEN_FILES]
  assert library_lines and len(verbose) > len(lines)
