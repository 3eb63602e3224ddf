"""A fastgen run's network as an EDM state dict, for the community's PyTorch tools.

  python -m fastgen.teachers.edm_export runs/sid_cifar --out=sid_generator.pt [--group=generator]

writes ``OUT`` (a ``torch.save`` zip written without PyTorch, or ``.npz`` if OUT ends so) holding
the EMA parameters of ``group`` under the names of EDM's preconditioner (``model.`` prefix, EDM
layouts and buffers; :func:`fastgen.teachers.edm_import.params_to_edm`), and ``OUT.json``, the
EDM constructor arguments of that network. In EDM's code base::

  kwargs = json.load(open('sid_generator.pt.json'))
  net = dnnlib.util.construct_class_by_name(**kwargs)
  net.load_state_dict(torch.load('sid_generator.pt', weights_only=True))

The default group is the network of the run's objective (its ``network_group``: ``generator``
of SiD / DMD, ``student`` of the other distillation rules, ``denoiser`` of teacher training).
"""

import json
import os
import sys

import numpy as np

from fastgen import checkpoint, objectives, teachers
from fastgen.teachers import edm_import
from fastgen.teachers import torch_files

def export(workdir: str, out: str, group: str = '') -> str:
  """Write ``out`` and ``out + '.json'`` from ``workdir``'s newest checkpoint; returns the group."""
  config = teachers.read_config(workdir)
  kwargs = edm_import.edm_kwargs(config.network.to_dict())
  ema = checkpoint.load_params(workdir, ('ema',))
  group = group or objectives.objective_class(config.objective.name).network_group
  if group not in ema:
    raise edm_import.EDMImportError(f'{workdir} has no trained network {group!r} (it has '
                                    f'{", ".join(ema)}): pass --group')
  state_dict = edm_import.params_to_edm(ema[group], config.network.to_dict())
  tmp = f'{out}.partial-{os.getpid()}'
  try:
    if out.endswith('.npz'):
      with open(tmp, 'wb') as f:
        np.savez(f, **state_dict)
    else:
      torch_files.save_torch_zip(tmp, state_dict)
    with open(tmp + '.json', 'w') as f:
      json.dump(kwargs, f, indent=2)
    os.replace(tmp + '.json', out + '.json')
    os.replace(tmp, out)
  finally:
    for path in (tmp, tmp + '.json'):
      if os.path.exists(path):
        os.remove(path)
  return group


def main(argv):
  if len(argv) != 2:
    print('usage: python -m fastgen.teachers.edm_export WORKDIR --out=FILE [--group=NAME]',
          file=sys.stderr)
    sys.exit(1)
  try:
    group = export(argv[1], _OUT.value, _GROUP.value)
  except (edm_import.EDMImportError, FileNotFoundError, checkpoint.CheckpointError) as e:
    print(f'fastgen: error: {e}', file=sys.stderr)
    sys.exit(1)
  print(f'wrote {_OUT.value} ({group}) and {_OUT.value}.json')


if __name__ == '__main__':
  from absl import app, flags
  _OUT = flags.DEFINE_string('out', None, 'The state dict to write (.pt, or .npz).', required=True)
  _GROUP = flags.DEFINE_string('group', '', 'The trained network to export (default: see above).')
  app.run(main)
