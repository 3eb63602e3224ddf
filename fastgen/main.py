"""fastgen's command line.

  python -m fastgen.main --config=configs/edm_digits.py --workdir=runs/edm_digits [--mode=train]
  python -m fastgen.main --config=configs/edm_digits.py --workdir=runs/edm_digits --mode=sample
  python -m fastgen.main --config=configs/edm_digits.py --workdir=runs/edm_digits --mode=eval

Any config entry can be overridden: ``--config.train.num_steps=200``. Errors in the user's input
(config, data, checkpoints) print one ``fastgen: error: ...`` line and exit with status 1.
"""

import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # TensorFlow's INFO lines, if tfds imports it.

from absl import app, flags, logging  # pylint: disable=g-import-not-at-top
from ml_collections import config_flags

from fastgen import configs  # pylint: disable=g-import-not-at-top

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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  config = _CONFIG.value
  # Imported after flag parsing so --help and flag errors stay fast.
  from fastgen import checkpoint, data, inference, logs, step, train
  logs.quiet_libraries()
  user_errors = (ValueError, KeyError, FileNotFoundError, checkpoint.CheckpointError,
                 data.DataUnavailableError, step.NonFiniteLossError)
  try:
    _initialize_distributed(config)
    if _MODE.value == 'train':
      train.train_and_evaluate(config, _WORKDIR.value)
    elif _MODE.value == 'sample':
      inference.sample_to_workdir(config, _WORKDIR.value)
    else:
      inference.evaluate_workdir(config, _WORKDIR.value)
  except user_errors as e:
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
