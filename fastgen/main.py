"""fastgen's command line.

  python -m fastgen.main --config=configs/edm_digits.py --workdir=runs/edm_digits [--mode=train]
  python -m fastgen.main --config=configs/edm_digits.py --workdir=runs/edm_digits --mode=sample
  python -m fastgen.main --config=configs/edm_digits.py --workdir=runs/edm_digits --mode=eval

Any config entry can be overridden: ``--config.train.num_steps=200``. Errors in the user's input
(config, data, checkpoints) print one ``fastgen: error: ...`` line and exit with status 1.
"""

import os
import sys

from fastgen import interrupts

if __name__ == '__main__':  # before anything slow: a signal during start-up is one line
  interrupts.install(at_once=False)

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # TensorFlow's INFO lines, if tfds imports it.

from absl import app, flags, logging  # pylint: disable=g-import-not-at-top
from ml_collections import config_flags

from fastgen import configs, settings  # pylint: disable=g-import-not-at-top

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'A packaged config by name (configs/sid_cifar.py, sid_cifar or sid:cifar, '
    'with an optional :variant) or the path of a config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics, samples.')
_MODE = flags.DEFINE_enum('mode', 'train', ['train', 'sample', 'eval'], 'What to do.')
flags.mark_flags_as_required(['config', 'workdir'])


def _initialize_distributed(config):
  import jax  # Like main's imports: after flag parsing, so --help and flag errors stay fast.
  cfg = config.distributed
  if not cfg.enabled:
    return
  kwargs = {}
  if cfg.coordinator_address:
    kwargs = dict(coordinator_address=cfg.coordinator_address, num_processes=cfg.num_processes,
                  process_id=cfg.process_id)
  jax.distributed.initialize(**kwargs)
  logging.info('process %d of %d, %d local devices', jax.process_index(), jax.process_count(),
               jax.local_device_count())


def _user_errors() -> tuple[type[Exception], ...]:
  """Errors in the user's input or environment: one line, exit status 1, no traceback."""
  from fastgen import checkpoint, data, step, workdir
  return (ValueError, KeyError, OSError, checkpoint.CheckpointError, data.DataUnavailableError,
          step.NonFiniteLossError, workdir.WorkdirError)


def _enable_compilation_cache() -> None:
  """JAX's persistent compilation cache in ``$FASTGEN_CACHE/jax`` (default
  ``~/.cache/fastgen/jax``) unless ``JAX_COMPILATION_CACHE_DIR`` names another: a resumed run, a
  rerun or ``--mode=sample`` of the same config loads its programs instead of compiling them.
  ``FASTGEN_COMPILATION_CACHE=0`` turns it off. Every program is cached, not only those that
  took JAX's default 1 s to compile (``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` sets another):
  a run's many small programs (checkpoint checksums, the sampler's pieces) otherwise compile again
  in every process, 2 s of a 7.3 s rerun of the tests' tiny config."""
  import jax
  from fastgen.assets import fetch
  if os.environ.get('FASTGEN_COMPILATION_CACHE', '1') == '0':
    return
  if not jax.config.jax_compilation_cache_dir:
    jax.config.update('jax_compilation_cache_dir', os.path.join(fetch.cache_dir(), 'jax'))
  if 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS' not in os.environ:
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)


def _run_mode(config, mode: str, workdir: str) -> None:
  settings.check(config)  # before JAX is imported: bad settings fail at once
  # Imported after flag parsing so --help and flag errors stay fast.
  from fastgen import inference, logs, train
  logs.quiet_libraries()
  _enable_compilation_cache()
  _initialize_distributed(config)
  interrupts.raise_if_pending()
  if mode == 'train':
    train.train_and_evaluate(config, workdir)
  elif mode == 'sample':
    inference.sample_to_workdir(config, workdir)
  else:
    inference.evaluate_workdir(config, workdir)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  try:
    _run_mode(_CONFIG.value, _MODE.value, _WORKDIR.value)
  except interrupts.Interrupted as e:
    print(f'fastgen: interrupted by {e.name}; the checkpoints in {_WORKDIR.value} are intact',
          file=sys.stderr)
    sys.exit(128 + e.signum)
  except Exception as e:  # pylint: disable=broad-except
    if not isinstance(e, ValueError) and not isinstance(e, _user_errors()):
      raise
    logging.debug('error', exc_info=True)
    message = e.args[0] if isinstance(e, KeyError) and e.args else e
    print(f'fastgen: error: {message}', file=sys.stderr)
    sys.exit(1)


def _parse_flags(argv):
  """absl flag parsing, with a bad ``--config.x.y`` override or config file as one error line; a
  config name is looked up in :mod:`fastgen.configs`."""
  try:
    argv = flags.FLAGS(configs.resolve_config_flag(argv))
    _CONFIG.value.keys()  # A config file that failed to load raises here, not at parse time.
    return argv
  except flags.Error as e:
    print(f'fastgen: error: {e}\nPass --helpshort for the flags.', file=sys.stderr)
  except configs.UnknownConfigError as e:
    print(f'fastgen: error: {e}', file=sys.stderr)
  except (AttributeError, KeyError) as e:
    bad = [a for a in argv[1:] if a.startswith('--config.')]
    print(f'fastgen: error: unknown config key in {" ".join(bad) or "--config"}: {e}',
          file=sys.stderr)
  except (OSError, SyntaxError, TypeError, ValueError) as e:
    print(f'fastgen: error: cannot load the config: {type(e).__name__}: {e}', file=sys.stderr)
  sys.exit(1)


def run():
  """The ``fastgen`` console script: ``python -m fastgen.main``'s command line."""
  interrupts.install(at_once=False)
  # absl's --help shows __main__'s docstring and the key flags of the module named sys.argv[0]:
  # under the console script that is the script, so name this module's docstring and flags.
  script = sys.modules['__main__']
  if script is not sys.modules[__name__] and not script.__doc__:
    script.__doc__ = __doc__.replace('python -m fastgen.main', 'fastgen')
    for name in ('config', 'workdir', 'mode'):
      flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])
  app.run(main, flags_parser=_parse_flags)


if __name__ == '__main__':
  run()
