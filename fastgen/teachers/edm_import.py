"""EDM checkpoints (Karras et al. 2022, github.com/NVlabs/edm) <-> fastgen denoisers.

  python -m fastgen.teachers.edm_import edm-cifar10-32x32-cond-vp.pkl --workdir=teachers/cifar_cond
  python -m fastgen.teachers.edm_import model.pt --config=configs/sid_cifar.py --workdir=OUT

(``--config`` takes the names of :mod:`fastgen.configs` or the path of a config file.)

writes a fastgen workdir (``config.json`` + an orbax checkpoint at step 0 whose ``params`` and
``ema`` hold the network), usable as ``--config.teacher.workdir=OUT`` (``teacher.kind
='checkpoint'``) and by ``--mode=eval`` / ``--mode=sample`` with the config it was converted with.
Sources: EDM's network pickles (``data['ema']``; architecture and preconditioning come from the
pickle, read with :mod:`fastgen.teachers.torch_files`, which never runs the pickle's code), or
state dicts with EDM's parameter names (a ``torch.save`` zip or an ``.npz``; the architecture
comes from ``--config``'s network section, names may carry EDMPrecond's ``model.`` prefix).

EDM -> fastgen: ``SongUNet`` (DDPM++, NCSN++) -> ``'unet'``, ``DhariwalUNet`` (ADM) -> ``'adm'``;
``EDMPrecond`` / ``VPPrecond`` / ``VEPrecond`` -> parameterization ``'edm'`` / ``'vp'`` / ``'ve'``
(:mod:`fastgen.denoiser`). Names: EDM ``enc.32x32_block0.conv0.weight`` <-> Flax
``enc_32x32_block0/conv0/kernel``; Linear weights are transposed, conv weights OIHW <-> HWIO,
GroupNorm ``weight`` <-> ``scale``. Tensors with no fastgen parameter: the resampling filters
(checked against the architecture's), ``map_augment.weight`` (dropped: EDM's samplers pass no
augmentation labels, so it contributes zero) and SongUNet's ``map_label.bias`` (folded into
``map_layer0``: b0 <- b0 + W0 b_label; exported as zero). :func:`params_to_edm` writes the
reverse, so a distilled student loads into EDM's networks (see ``fastgen.teachers.edm_export``).
"""

import collections
import dataclasses
import os
import pickle
import re
import shutil
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fastgen import checkpoint, configs, interrupts, networks, objectives, step
from fastgen import denoiser as denoiser_lib
from fastgen.configs import default
from fastgen.teachers import torch_files

PRECONDITIONINGS = {'EDMPrecond': 'edm', 'VPPrecond': 'vp', 'VEPrecond': 've'}
NETWORK_NAMES = {'SongUNet': 'unet', 'DhariwalUNet': 'adm'}
# EDM's architecture arguments and their defaults (training/networks.py); fastgen's network fields
# have the same names. Written out in full, so a converted config does not rest on defaults.
_ARCH_DEFAULTS = {
    'SongUNet': dict(model_channels=128, channel_mult=(1, 2, 2, 2), channel_mult_emb=4,
                     num_blocks=4, attn_resolutions=(16,), dropout=0.10,
                     embedding_type='positional', channel_mult_noise=1, encoder_type='standard',
                     resample_filter=(1, 1)),
    'DhariwalUNet': dict(model_channels=192, channel_mult=(1, 2, 3, 4), channel_mult_emb=4,
                         num_blocks=3, attn_resolutions=(32, 16, 8), dropout=0.10),
}
# Accepted and not needed by a sampling network: augmentation input size (map_augment is
# dropped), label dropout and fp16 (training), the noise range (samplers take it from configs).
_IGNORED_KWARGS = ('augment_dim', 'label_dropout', 'use_fp16', 'sigma_min', 'sigma_max',
                   'epsilon_t')
_VP_DEFAULTS = {'beta_d': 19.9, 'beta_min': 0.1, 'M': 1000}  # = fastgen.diffusion VP_*


class EDMImportError(ValueError):
  """A checkpoint that does not fit (unknown architecture, missing / extra / misshapen tensors)."""


# ----------------------------------------------------------------------- architecture <-> kwargs


def network_config_from_edm(class_name: str, kwargs: dict) -> dict:
  """A fastgen ``network`` config section from an EDM preconditioner's class and its constructor
  arguments (``_init_kwargs`` of the pickled object, e.g. ``model_type='SongUNet'``)."""
  if class_name not in PRECONDITIONINGS:
    raise EDMImportError(f'unknown EDM network class {class_name!r}; fastgen imports '
                         f'{", ".join(PRECONDITIONINGS)}')
  kwargs = dict(kwargs)
  parameterization = PRECONDITIONINGS[class_name]
  model_type = kwargs.pop('model_type', 'DhariwalUNet' if class_name == 'EDMPrecond' else
                          'SongUNet')
  if model_type not in NETWORK_NAMES:
    raise EDMImportError(f'unknown EDM architecture model_type={model_type!r}; fastgen imports '
                         f'{", ".join(NETWORK_NAMES)}')
  if parameterization == 'vp':
    changed = sorted(k for k in _VP_DEFAULTS if kwargs.pop(k, _VP_DEFAULTS[k]) != _VP_DEFAULTS[k])
    if changed:
      raise EDMImportError(f'VPPrecond with non-default {", ".join(changed)} is not supported '
                           f'(fastgen uses {_VP_DEFAULTS})')
  for key, supported in (('decoder_type', ('standard',)),
                         ('encoder_type', ('standard', 'residual'))):
    if kwargs.get(key, 'standard') not in supported:
      raise EDMImportError(f'EDM {model_type} with {key}={kwargs[key]!r} is not supported '
                           f'(fastgen has {", ".join(supported)})')
  kwargs.pop('decoder_type', None)
  missing = [k for k in ('img_resolution', 'img_channels') if k not in kwargs]
  if missing:
    raise EDMImportError(f'EDM {class_name} arguments lack {", ".join(missing)}')
  config = {'name': NETWORK_NAMES[model_type], 'parameterization': parameterization,
            'sigma_data': float(kwargs.pop('sigma_data', 0.5)),
            'in_channels': int(kwargs.pop('img_channels')),
            'num_classes': int(kwargs.pop('label_dim', 0))}
  for key in _IGNORED_KWARGS:
    kwargs.pop(key, None)
  defaults = _ARCH_DEFAULTS[model_type]
  unknown = sorted(set(kwargs) - set(defaults) - {'img_resolution'})
  if unknown:
    raise EDMImportError(f'EDM {class_name}({model_type}) argument(s) {", ".join(unknown)} are '
                         f'unknown to fastgen: not an architecture fastgen can import')
  config['img_resolution'] = int(kwargs['img_resolution'])
  for key, default in defaults.items():
    value = kwargs.get(key, default)
    config[key] = tuple(value) if isinstance(value, (list, tuple)) else value
  return config


def edm_kwargs(network_config) -> dict:
  """The EDM constructor arguments (``class_name`` = EDM's preconditioner) that build the network
  of ``network_config``, the inverse of :func:`network_config_from_edm`."""
  cfg = dict(network_config)
  model_type = {v: k for k, v in NETWORK_NAMES.items()}.get(cfg.pop('name'))
  if model_type is None:
    raise EDMImportError(f'network {network_config["name"]!r} has no EDM counterpart; '
                         f'exportable: {", ".join(NETWORK_NAMES.values())}')
  precond = {v: k for k, v in PRECONDITIONINGS.items()}.get(cfg.pop('parameterization', 'edm'))
  if precond is None:
    raise EDMImportError(f'parameterization {network_config["parameterization"]!r} has no EDM '
                         f'preconditioner')
  kwargs = {'class_name': f'training.networks.{precond}', 'model_type': model_type,
            'img_channels': cfg.pop('in_channels'), 'label_dim': cfg.pop('num_classes', 0)}
  sigma_data = cfg.pop('sigma_data', 0.5)
  if precond == 'EDMPrecond':
    kwargs['sigma_data'] = sigma_data
  for key in ('dtype', 'remat'):
    cfg.pop(key, None)
  if cfg.pop('double_norm', False):
    raise EDMImportError('EDM networks have no adaptive double normalization (double_norm)')
  if cfg.pop('out_channels', None) not in (None, kwargs['img_channels']):
    raise EDMImportError('EDM networks output img_channels channels; out_channels differs')
  unknown = sorted(set(cfg) - set(_ARCH_DEFAULTS[model_type]) - {'img_resolution'})
  if unknown:
    raise EDMImportError(f'network field(s) {", ".join(unknown)} have no EDM {model_type} '
                         f'argument')
  net = denoiser_lib.from_config(network_config).net  # every argument, defaults included
  for key in ('img_resolution', *_ARCH_DEFAULTS[model_type]):
    value = getattr(net, key)
    kwargs[key] = list(value) if isinstance(value, tuple) else value
  return kwargs


# -------------------------------------------------------------------------- names and tensors


def _edm_name(path) -> str:
  """Flax path -> EDM name: ('enc_32x32_conv', 'kernel') -> 'enc.32x32_conv.weight'."""
  keys = [k.key for k in path]
  if keys[0].startswith(('enc_', 'dec_')):
    keys[0] = keys[0][:3] + '.' + keys[0][4:]
  if keys[-1] in ('kernel', 'scale'):
    keys[-1] = 'weight'
  return '.'.join(keys)


def _to_edm(array: np.ndarray) -> np.ndarray:
  """Flax -> PyTorch layout: conv HWIO -> OIHW, Dense [in, out] -> Linear [out, in]."""
  if array.ndim == 4:
    return array.transpose(3, 2, 0, 1)
  return array.T if array.ndim == 2 else array


def _to_flax(array: np.ndarray) -> np.ndarray:
  """PyTorch -> Flax layout, the inverse of :func:`_to_edm`."""
  if array.ndim == 4:
    return array.transpose(2, 3, 1, 0)
  return array.T if array.ndim == 2 else array


def _resample_filter_tensor(resample_filter) -> np.ndarray:
  """EDM Conv2d's ``resample_filter`` buffer: f f^T / sum(f)^2 as [1, 1, k, k]."""
  f = np.asarray(resample_filter, np.float32)
  return (np.outer(f, f) / f.sum() ** 2)[None, None]


def _buffers(network_config, flax_shapes) -> dict:
  """EDM's buffers that fastgen computes instead: the resampling filters of up/down blocks and
  of NCSN++'s aux_residual convs, name -> value."""
  f = _resample_filter_tensor(network_config.get('resample_filter', (1, 1)))
  names = []
  for module in flax_shapes:
    if module.endswith(('_down', '_up')):
      names += [f'{module}.conv0.resample_filter', f'{module}.skip.resample_filter']
    elif module.endswith('_aux_residual'):
      names.append(f'{module}.resample_filter')
  return {n[:3] + '.' + n[4:]: f for n in names}


def param_shapes(network_config):
  """The parameter tree of ``network_config``'s network as ``jax.ShapeDtypeStruct`` leaves."""
  model = denoiser_lib.from_config(network_config)
  res, channels = model.net.img_resolution, model.net.in_channels
  x = jnp.zeros((1, res, res, channels))
  return jax.eval_shape(lambda: model.init(jax.random.key(0), x))


def _has_label_bias(network_config) -> bool:
  return network_config['name'] == 'unet' and bool(network_config.get('num_classes', 0))


def params_to_edm(params, network_config, prefix: str = 'model.') -> dict:
  """A state dict (EDM name -> float32 array, PyTorch layouts) of ``params``, with EDM's
  resampling-filter buffers and a zero SongUNet ``map_label.bias``; ``prefix`` 'model.' is
  EDMPrecond's, '' the bare network's."""
  state = collections.OrderedDict()
  for path, leaf in jax.tree.leaves_with_path(params):
    state[prefix + _edm_name(path)] = _to_edm(np.asarray(leaf, np.float32))
  if _has_label_bias(network_config):
    state[prefix + 'map_label.bias'] = np.zeros(state[prefix + 'map_label.weight'].shape[0],
                                                np.float32)
  for name, value in _buffers(network_config, params).items():
    state[prefix + name] = value
  return state


_RESOLUTION = re.compile(r'(?:enc|dec)\.(\d+)x\1_')


def _strip_prefix(state_dict: dict) -> dict:
  if state_dict and all(k.startswith('model.') for k in state_dict):
    return {k[len('model.'):]: v for k, v in state_dict.items()}
  return dict(state_dict)


def _name_list(names, limit=12) -> str:
  names = sorted(names)
  more = f' and {len(names) - limit} more' if len(names) > limit else ''
  return ', '.join(names[:limit]) + more


def params_from_edm(state_dict: dict, network_config) -> tuple[dict, list[str]]:
  """``(params, dropped)``: fastgen params of ``network_config`` from an EDM state dict (names of
  the preconditioner, with ``model.``, or of the bare network), and the names of tensors it
  holds that the network has no use for (``map_augment.weight``). Every other tensor fills
  exactly one parameter or is a checked buffer; missing, extra or misshapen tensors raise
  :class:`EDMImportError` naming them."""
  state = {k: np.asarray(v) for k, v in _strip_prefix(state_dict).items()}
  shapes = param_shapes(network_config)
  targets = {_edm_name(path): (path, leaf.shape)
             for path, leaf in jax.tree.leaves_with_path(shapes)}
  buffers = _buffers(network_config, shapes)
  expected = set(targets) | set(buffers) | ({'map_label.bias'} if _has_label_bias(
      network_config) else set())
  droppable = {'map_augment.weight'}
  missing, extra = expected - set(state), set(state) - expected - droppable
  resolutions = {int(m.group(1)) for m in map(_RESOLUTION.match, state) if m}
  if missing and resolutions and max(resolutions) != network_config['img_resolution']:
    raise EDMImportError(
        f'state dict is for img_resolution {max(resolutions)} (it has '
        f'{_name_list([n for n in extra if f"{max(resolutions)}x" in n], 2)}), the '
        f'{network_config["name"]} network of this config for img_resolution '
        f'{network_config["img_resolution"]} (it needs '
        f'{_name_list([n for n in missing if "x" in n.split(".")[1]], 2)})')
  if missing or extra:
    problems = ([f'missing {_name_list(missing)}'] if missing else []) + (
        [f'unexpected {_name_list(extra)}'] if extra else [])
    raise EDMImportError(f'state dict does not fit the {network_config["name"]} network of this '
                         f'config: {"; ".join(problems)}')
  bad_shapes = [f'{n} {state[n].shape} (expected {_to_edm(np.broadcast_to(0.0, shape)).shape})'
                for n, (_, shape) in targets.items()
                if _to_flax(state[n]).shape != tuple(shape)]
  bad_shapes += [f'{n} {state[n].shape} (expected {v.shape})' for n, v in buffers.items()
                 if state[n].shape != v.shape]
  if bad_shapes:
    raise EDMImportError(f'state dict shapes do not fit the {network_config["name"]} network of '
                         f'this config: {_name_list(bad_shapes, 6)}')
  wrong_filters = [n for n, v in buffers.items() if not np.allclose(state[n], v)]
  if wrong_filters:
    raise EDMImportError(f'resampling filters differ from resample_filter='
                         f'{network_config.get("resample_filter", (1, 1))}: '
                         f'{_name_list(wrong_filters)}')
  flat = {}
  for name, (path, _) in targets.items():
    flat[path] = _to_flax(state[name]).astype(np.float32)
  if _has_label_bias(network_config):  # b0 <- b0 + W0 b_label (W0 is EDM's [out, in])
    bias_path = targets['map_layer0.bias'][0]
    flat[bias_path] = flat[bias_path] + state['map_layer0.weight'] @ state['map_label.bias']
  params = jax.tree.map_with_path(lambda path, _: flat[path], shapes)
  return params, sorted(droppable & set(state))


# --------------------------------------------------------------------------------- reading files


def _module_state_dict(obj, prefix='') -> dict:
  """The state dict of an unpickled ``torch.nn.Module`` record (persistence object or
  container): parameters and persistent buffers, recursively, named as torch names them."""
  state = obj.state if isinstance(obj, torch_files.PersistentObject) else vars(obj)
  out = {}
  non_persistent = state.get('_non_persistent_buffers_set', set()) or set()
  for key, value in state.get('_parameters', {}).items():
    if value is not None:
      out[prefix + key] = value
  for key, value in state.get('_buffers', {}).items():
    if value is not None and key not in non_persistent:
      out[prefix + key] = value
  for key, module in state.get('_modules', {}).items():
    if module is not None:
      out.update(_module_state_dict(module, f'{prefix}{key}.'))
  return out


def read_edm(path: str, network_config=None):
  """``(network_config, params, dropped)`` from an EDM pickle, a torch.save state dict or an
  .npz. A pickle gives its own architecture (checked against ``network_config`` if given); a
  state dict needs ``network_config``."""
  obj = torch_files.load(path)
  if isinstance(obj, dict) and isinstance(obj.get('ema'), torch_files.PersistentObject):
    obj = obj['ema']  # an EDM training snapshot
  if isinstance(obj, torch_files.PersistentObject):
    net = obj
    kwargs = net.state.get('_init_kwargs')
    if not isinstance(kwargs, dict):
      raise EDMImportError(f'{path}: the pickled {net.class_name} carries no constructor '
                           f'arguments (_init_kwargs)')
    found = network_config_from_edm(net.class_name, kwargs)
    if network_config is not None:
      _check_same_network(found, network_config, path)
      found = {**dict(network_config), **found}
    state_dict = _module_state_dict(net)
  elif isinstance(obj, dict) and obj and all(isinstance(v, np.ndarray) for v in obj.values()):
    if network_config is None:
      raise EDMImportError(f'{path} is a state dict, which carries no architecture: pass '
                           f'--config with the network it was trained as')
    found, state_dict = dict(network_config), obj
  else:
    raise EDMImportError(f'{path} holds neither an EDM network (a pickle of one, or a snapshot '
                         f'dict with "ema") nor a state dict of tensors')
  try:
    params, dropped = params_from_edm(state_dict, found)
  except EDMImportError as e:
    raise EDMImportError(f'{path}: {e}') from None
  return found, params, dropped


def _check_same_network(found: dict, network_config, path: str) -> None:
  """Raise naming every field where the pickle's network differs from the config's."""
  if found['name'] != network_config.get('name'):
    raise EDMImportError(f'{path} holds an EDM {found["name"]!r} network; the config asks for '
                         f'{network_config.get("name")!r}')
  built = [networks.build_network({k: v for k, v in cfg.items()
                                   if k not in ('parameterization', 'sigma_data')})
           for cfg in (found, dict(network_config))]
  fields = [f.name for f in dataclasses.fields(built[0])
            if f.name not in ('parent', 'name', 'dtype', 'remat', 'dropout')]
  diffs = [f'{f} {getattr(built[0], f)!r} in the checkpoint, {getattr(built[1], f)!r} in the '
           f'config' for f in fields if getattr(built[0], f) != getattr(built[1], f)]
  for f in ('parameterization', 'sigma_data'):
    if found[f] != network_config.get(f, found[f]):
      diffs.append(f'{f} {found[f]!r} in the checkpoint, {network_config.get(f)!r} in the config')
  if diffs:
    raise EDMImportError(f'{path} does not match config.network: ' + '; '.join(diffs))


# ------------------------------------------------------------------------------- writing workdirs


def write_workdir(workdir: str, config: ml_collections.ConfigDict, params) -> None:
  """A fastgen workdir holding ``params`` as a trained EDM-objective run of ``config`` (step 0,
  ``params`` = ``ema``, fresh optimizer state), written to a temporary sibling and renamed, so
  a failure, or a signal once :func:`main` handles them, leaves nothing at ``workdir`` and no
  ``<workdir>.partial-<pid>``."""
  workdir = os.path.abspath(workdir)
  if os.path.exists(workdir) and (not os.path.isdir(workdir) or os.listdir(workdir)):
    raise EDMImportError(f'{workdir} exists and is not empty; choose a new --workdir')
  tmp = f'{workdir}.partial-{os.getpid()}'
  try:
    os.makedirs(tmp)
    objective = objectives.objective_class(config.objective.name)
    state = step.state_from_params({objective.network_group: jax.tree.map(jnp.asarray, params)},
                                   objective.groups, step.make_optimizer(config.optim))
    with interrupts.deferred():
      checkpointer = checkpoint.Checkpointer(tmp, keep=1)
      checkpointer.save(0, state, {})
      checkpointer.close()
    with open(os.path.join(tmp, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2))
    with interrupts.deferred():
      if os.path.isdir(workdir):
        os.rmdir(workdir)
      os.rename(tmp, workdir)
  finally:
    with interrupts.deferred():
      if os.path.exists(tmp):
        shutil.rmtree(tmp)


def import_to_workdir(source: str, workdir: str, config=None) -> dict:
  """Convert ``source`` and write ``workdir``; returns the network config section."""
  network_config, params, dropped = read_edm(
      source, None if config is None else config.network.to_dict())
  interrupts.raise_if_pending()
  config = ml_collections.ConfigDict(
      (config if config is not None else default.get_config()).to_dict())
  config.network = ml_collections.ConfigDict(network_config)
  config.objective = ml_collections.ConfigDict({'name': 'edm'})
  config.teacher = ml_collections.ConfigDict({'kind': 'none'})
  write_workdir(workdir, config, params)
  if dropped:
    print(f'dropped {", ".join(dropped)} (augmentation conditioning, zero when sampling)')
  return network_config


def main(argv):
  if len(argv) != 2:
    print('usage: python -m fastgen.teachers.edm_import SRC --workdir=OUT [--config=FILE]',
          file=sys.stderr)
    sys.exit(1)
  interrupts.install()
  import time
  from absl import logging
  from fastgen import logs
  logs.quiet_libraries()  # orbax's INFO lines, unless --verbosity=1
  start = time.time()
  if os.path.exists(argv[1]):
    logging.info('converting %s (%.1f MB) into %s', argv[1], os.path.getsize(argv[1]) / 1e6,
                 _WORKDIR.value)
  try:
    network_config = import_to_workdir(argv[1], _WORKDIR.value, _CONFIG.value)
  except (EDMImportError, OSError, pickle.UnpicklingError) as e:
    print(f'fastgen: error: {e}', file=sys.stderr)
    sys.exit(1)
  except interrupts.Interrupted as e:
    written = ('complete' if os.path.exists(os.path.join(_WORKDIR.value, 'config.json'))
               else 'not written')
    print(f'fastgen: error: interrupted by {e}; {_WORKDIR.value} {written}', file=sys.stderr)
    sys.exit(128 + e.signum)
  print(f'wrote {_WORKDIR.value} in {time.time() - start:.1f} s: {network_config}')


if __name__ == '__main__':
  from absl import app, flags
  from ml_collections import config_flags
  _CONFIG = config_flags.DEFINE_config_file(
      'config', None, 'A fastgen config: the architecture of a state dict (its network section), '
      'checked against a pickle\'s; its data and optim sections go to the workdir\'s config.')
  _WORKDIR = flags.DEFINE_string('workdir', None, 'The fastgen workdir to write (new).',
                                 required=True)
  app.run(main, argv=configs.resolve_config_flag(sys.argv))
