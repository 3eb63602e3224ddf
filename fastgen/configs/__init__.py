"""fastgen's configs: ``default.py``, data presets x one file per rule, by name.

A config is named ``<rule>_<data>[:<variant>]`` (``sid_cifar``,
``slimflow_gmm2d:one_step_regression``): ``get_config('<data>[:<variant>]')`` of
``fastgen/configs/<rule>.py``, ``<data>`` one of the rule file's ``DATA_SETS`` (data presets:
:mod:`fastgen.configs.data_presets`), ``<variant>`` one of its ``VARIANTS``. Every module here
with ``DATA_SETS`` is a rule file, so a new rule needs one file. The command line takes the same
names in the forms the docs use, from any directory:

  python -m fastgen.main --config=configs/sid_cifar.py ...   # or sid_cifar, or sid:cifar

and a path to an existing file loads that file (a config of one's own). In Python:

  from fastgen import configs
  config = configs.get_config('sid_gmm2d')
"""

import importlib
import os
import pkgutil
import re

_HELPERS = ('default', 'data_presets', 'networks')
# configs/<rule>_<data>.py[:variant], as the docs write a packaged config on the command line.
_DOCUMENTED_PATH = re.compile(r'(?:\./)?configs/(\w+)\.py')


class UnknownConfigError(ValueError):
  """A config name that names no packaged config."""


def rule_modules() -> dict:
  """``{rule: module}`` of the rule files of this package."""
  modules = {}
  for info in pkgutil.iter_modules(__path__):
    if info.name not in _HELPERS:
      module = importlib.import_module(f'{__name__}.{info.name}')
      if hasattr(module, 'DATA_SETS'):
        modules[info.name] = module
  return dict(sorted(modules.items()))


def names() -> list[str]:
  """Every packaged config, ``<rule>_<data>``, variants as ``<rule>_<data>:<variant>``."""
  found = []
  for rule, module in rule_modules().items():
    for data in module.DATA_SETS:
      found.append(f'{rule}_{data}')
      found += [f'{rule}_{data}:{variant}' for variant in getattr(module, 'VARIANTS', ())]
  return found


def _unknown(name: str) -> UnknownConfigError:
  known = []
  for rule, module in rule_modules().items():
    variants = '|'.join(getattr(module, 'VARIANTS', ()))
    known.append(f'{rule}_{{{",".join(module.DATA_SETS)}}}' +
                 (f'[:{variants}]' if variants else ''))
  return UnknownConfigError(f'unknown config {name!r}; known: {", ".join(known)} (or the path '
                            f'of a config file)')


def lookup(name: str):
  """``(module, arg)`` of config ``name``: ``<rule>_<data>[:<variant>]``,
  ``<rule>:<data>[:<variant>]`` or ``configs/<rule>_<data>.py[:<variant>]``; ``module``'s
  ``get_config(arg)`` builds it. Raises :class:`UnknownConfigError`."""
  head, _, variant = name.partition(':')
  documented = _DOCUMENTED_PATH.fullmatch(head)
  if documented:
    head = documented.group(1)
  modules = rule_modules()
  if head in modules and not documented:  # <rule>:<data>[:<variant>]
    rule, (data, _, variant) = head, variant.partition(':')
  else:
    rule, _, data = head.rpartition('_')
  module = modules.get(rule)
  if module is None or data not in module.DATA_SETS or (
      variant and variant not in getattr(module, 'VARIANTS', ())):
    raise _unknown(name)
  return module, f'{data}:{variant}' if variant else data


def get_config(name: str):
  """The config named ``name`` (see :func:`lookup`), e.g. ``get_config('sid_gmm2d')``."""
  module, arg = lookup(name)
  return module.get_config(arg)


def config_file_flag(value: str) -> str:
  """A ``--config`` value as ml_collections' config-file flag reads it (``path[:arg]``): an
  existing file as it is, a config name as its rule file and argument. Raises
  :class:`UnknownConfigError` for a name or documented path that names no config."""
  if os.path.isfile(value.partition(':')[0]):
    return value
  try:
    module, arg = lookup(value)
  except UnknownConfigError:
    head = value.partition(':')[0]
    if _DOCUMENTED_PATH.fullmatch(head) or re.fullmatch(r'\w+', head):
      raise
    return value  # some other path: the flag's own "cannot load" error names it
  return f'{module.__file__}:{arg}'


def resolve_config_flag(argv: list[str]) -> list[str]:
  """``argv`` with the value of ``--config=V`` (or ``--config V``) passed through
  :func:`config_file_flag`."""
  argv = list(argv)
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      argv[i] = '--config=' + config_file_flag(arg[len('--config='):])
    elif arg == '--config' and i + 1 < len(argv):
      argv[i + 1] = config_file_flag(argv[i + 1])
  return argv
