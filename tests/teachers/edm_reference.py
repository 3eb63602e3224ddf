"""EDM's networks as the tests see them, written from EDM's training/networks.py (NVlabs/edm) and
independent of fastgen's code: the state dict (names, shapes, buffers) its constructors create,
a numpy forward pass over such a state dict (NCHW, as EDM computes it), and a writer of network
pickles in the byte format EDM's ``torch_utils.persistence`` + PyTorch produce.
"""

import collections
import copyreg
import io
import pickle
import struct

import numpy as np

from fastgen.teachers import torch_files

# --------------------------------------------------------------------------------- state dicts


def _filter(resample_filter):
  f = np.asarray(resample_filter, np.float32)
  return np.outer(f, f) / f.sum() ** 2


def state_shapes(model_type, img_resolution, img_channels, label_dim=0, augment_dim=0, **kw):
  """EDM ``<model_type>(...).state_dict()``: name -> shape, or -> value for buffers."""
  song = model_type == 'SongUNet'
  mc = kw.get('model_channels', 128 if song else 192)
  mult = kw.get('channel_mult', (1, 2, 2, 2) if song else (1, 2, 3, 4))
  num_blocks = kw.get('num_blocks', 4 if song else 3)
  attn = kw.get('attn_resolutions', (16,) if song else (32, 16, 8))
  emb = mc * kw.get('channel_mult_emb', 4)
  noise = mc * kw.get('channel_mult_noise', 1) if song else mc
  filt = _filter(kw.get('resample_filter', (1, 1)) if song else (1, 1))
  out = collections.OrderedDict()

  def linear(name, i, o, bias=True):
    out[f'{name}.weight'] = (o, i)
    if bias:
      out[f'{name}.bias'] = (o,)

  def conv(name, i, o, k, resample=False):
    if k:
      out[f'{name}.weight'] = (o, i, k, k)
      out[f'{name}.bias'] = (o,)
    if resample:
      out[f'{name}.resample_filter'] = filt[None, None]

  def norm(name, c):
    out[f'{name}.weight'] = out[f'{name}.bias'] = (c,)

  def block(name, cin, cout, up=False, down=False, attention=False):
    norm(f'{name}.norm0', cin)
    conv(f'{name}.conv0', cin, cout, 3, up or down)
    linear(f'{name}.affine', emb, cout * (1 if song else 2))
    norm(f'{name}.norm1', cout)
    conv(f'{name}.conv1', cout, cout, 3)
    if cout != cin or up or down:
      conv(f'{name}.skip', cin, cout, 1 if song or cout != cin else 0, up or down)
    if attention and (song or cout // 64):
      norm(f'{name}.norm2', cout)
      conv(f'{name}.qkv', cout, 3 * cout, 1)
      conv(f'{name}.proj', cout, cout, 1)

  if song and kw.get('embedding_type', 'positional') == 'fourier':
    out['map_noise.freqs'] = (noise // 2,)
  if song and label_dim:
    linear('map_label', label_dim, noise)
  if augment_dim:
    linear('map_augment', augment_dim, noise, bias=False)
  linear('map_layer0', noise, emb)
  linear('map_layer1', emb, emb)
  if not song and label_dim:
    linear('map_label', label_dim, emb, bias=False)
  skips, cout, caux = [], img_channels, img_channels
  for level, m in enumerate(mult):
    res = img_resolution >> level
    if level == 0:
      conv(f'enc.{res}x{res}_conv', cout, mc * (1 if song else m), 3)
      cout = mc * (1 if song else m)
    else:
      block(f'enc.{res}x{res}_down', cout, cout, down=True)
      if song and kw.get('encoder_type', 'standard') == 'residual':
        conv(f'enc.{res}x{res}_aux_residual', caux, cout, 3, resample=True)
        caux = cout
    skips.append(cout)
    for idx in range(num_blocks):
      block(f'enc.{res}x{res}_block{idx}', cout, mc * m, attention=res in attn)
      cout = mc * m
      skips.append(cout)
  for level, m in reversed(list(enumerate(mult))):
    res = img_resolution >> level
    if level == len(mult) - 1:
      block(f'dec.{res}x{res}_in0', cout, cout, attention=True)
      block(f'dec.{res}x{res}_in1', cout, cout)
    else:
      block(f'dec.{res}x{res}_up', cout, cout, up=True)
    for idx in range(num_blocks + 1):
      attention = (idx == num_blocks or not song) and res in attn
      block(f'dec.{res}x{res}_block{idx}', cout + skips.pop(), mc * m, attention=attention)
      cout = mc * m
  prefix = f'dec.{img_resolution}x{img_resolution}_aux_' if song else 'out_'
  norm(prefix + 'norm', cout)
  conv(prefix + 'conv', cout, img_channels, 3)
  return out


def random_state_dict(shapes, seed=0):
  """Buffers as given, GroupNorm weights near 1, everything else N(0, 0.2^2)."""
  rng = np.random.default_rng(seed)
  out = collections.OrderedDict()
  for name, shape in shapes.items():
    if isinstance(shape, np.ndarray):
      out[name] = shape
    elif name.endswith('freqs'):
      out[name] = (16 * rng.normal(size=shape)).astype(np.float32)
    else:
      base = 1.0 if ('norm' in name and name.endswith('weight')) else 0.0
      out[name] = (base + 0.2 * rng.normal(size=shape)).astype(np.float32)
  return out


# ----------------------------------------------------------------------------- numpy forward


def _conv(x, w, b=None, pad=None, stride=1, groups=1):
  """torch.nn.functional.conv2d for NCHW x and [O, I / groups, k, k] w."""
  k = w.shape[-1]
  pad = k // 2 if pad is None else pad
  xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
  h, wd = (xp.shape[2] - k) // stride + 1, (xp.shape[3] - k) // stride + 1
  out = 0
  for i in range(k):
    for j in range(k):
      patch = xp[:, :, i:i + stride * h:stride, j:j + stride * wd:stride]
      if groups == 1:
        out = out + np.einsum('nchw,oc->nohw', patch, w[:, :, i, j])
      else:
        out = out + patch * w[None, :, 0, i, j, None, None]
  return out if b is None else out + b[None, :, None, None]


def _down(x, filt):
  f = np.tile(filt, (x.shape[1], 1, 1, 1))
  return _conv(x, f, pad=(filt.shape[-1] - 1) // 2, stride=2, groups=x.shape[1])


def _up(x, filt):
  """conv_transpose2d(x, 4 f, stride 2, padding (k - 1) // 2, groups=C) via zero insertion."""
  n, c, h, w = x.shape
  k = filt.shape[-1]
  z = np.zeros((n, c, 2 * h - 1, 2 * w - 1), x.dtype)
  z[:, :, ::2, ::2] = x
  f = np.tile(4 * filt[::-1, ::-1], (c, 1, 1, 1))
  return _conv(z, f, pad=k - 1 - (k - 1) // 2, groups=c)


def _norm(x, p, name, eps):
  n, c, h, w = x.shape
  g = min(32, c // 4)
  xg = x.reshape(n, g, -1)
  xg = (xg - xg.mean(-1, keepdims=True)) / np.sqrt(xg.var(-1, keepdims=True) + eps)
  return xg.reshape(x.shape) * p[f'{name}.weight'][None, :, None, None] + p[
      f'{name}.bias'][None, :, None, None]


def _silu(x):
  return x / (1 + np.exp(-x))


def _linear(x, p, name):
  out = x @ p[f'{name}.weight'].T
  return out + p[f'{name}.bias'] if f'{name}.bias' in p else out


def _block(p, name, x, emb, song, filt):
  eps, skip_scale = (1e-6, np.sqrt(0.5)) if song else (1e-5, 1.0)
  conv = lambda h, n: _conv(h, p[f'{name}.{n}.weight'], p[f'{name}.{n}.bias'])
  resample = (lambda h: _down(h, filt)) if name.endswith('_down') else (
      (lambda h: _up(h, filt)) if name.endswith('_up') else (lambda h: h))
  orig = x
  x = conv(resample(_silu(_norm(x, p, f'{name}.norm0', eps))), 'conv0')
  params = _linear(emb, p, f'{name}.affine')[:, :, None, None]
  if song:
    x = _silu(_norm(x + params, p, f'{name}.norm1', eps))
  else:
    scale, shift = np.split(params, 2, axis=1)
    x = _silu(shift + _norm(x, p, f'{name}.norm1', eps) * (scale + 1))
  x = conv(x, 'conv1')
  if f'{name}.skip.weight' in p:
    orig = conv(resample(orig), 'skip')
  elif f'{name}.skip.resample_filter' in p:
    orig = resample(orig)
  x = (x + orig) * skip_scale
  if f'{name}.qkv.weight' in p:
    n, c, h, w = x.shape
    heads = 1 if song else c // 64
    qkv = conv(_norm(x, p, f'{name}.norm2', eps), 'qkv').reshape(n * heads, c // heads, 3, h * w)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    logits = np.einsum('ncq,nck->nqk', q, k) / np.sqrt(k.shape[1])
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    a = np.einsum('nqk,nck->ncq', weights, v).reshape(n, c, h, w)
    x = (conv(a, 'proj') + x) * skip_scale
  return x


def _network(p, model_type, x, noise_labels, class_labels, **kw):
  """EDM ``SongUNet`` / ``DhariwalUNet`` forward on NCHW float64 arrays."""
  song = model_type == 'SongUNet'
  filt = _filter(kw.get('resample_filter', (1, 1)) if song else (1, 1))
  if 'map_noise.freqs' in p:
    arg = np.outer(noise_labels, 2 * np.pi * p['map_noise.freqs'])
    emb = np.concatenate([np.cos(arg), np.sin(arg)], 1)
  else:
    half = p['map_layer0.weight'].shape[1] // 2
    freqs = (1 / 10000) ** (np.arange(half) / (half - (1 if song else 0)))
    arg = np.outer(noise_labels, freqs)
    emb = np.concatenate([np.cos(arg), np.sin(arg)], 1)
  if song:
    emb = np.concatenate(np.split(emb, 2, 1)[::-1], 1)
    if 'map_label.weight' in p:
      emb = emb + _linear(class_labels * np.sqrt(class_labels.shape[1]), p, 'map_label')
    emb = _silu(_linear(_silu(_linear(emb, p, 'map_layer0')), p, 'map_layer1'))
  else:
    emb = _linear(_silu(_linear(emb, p, 'map_layer0')), p, 'map_layer1')
    if 'map_label.weight' in p:
      emb = emb + _linear(class_labels, p, 'map_label')
    emb = _silu(emb)
  names = list(dict.fromkeys('.'.join(n.split('.')[:2]) for n in p if n.startswith(('enc.',
                                                                                    'dec.'))))
  skips, aux = [], x
  for name in [n for n in names if n.startswith('enc.')]:
    if name.endswith('_conv'):
      x = _conv(x, p[f'{name}.weight'], p[f'{name}.bias'])
    elif name.endswith('_aux_residual'):  # fused: conv with padding 1 + f_pad, then filter
      k = filt.shape[-1]
      h = _conv(aux, p[f'{name}.weight'], p[f'{name}.bias'], pad=1 + (k - 1) // 2)
      h = _conv(h, np.tile(filt, (h.shape[1], 1, 1, 1)), pad=0, stride=2, groups=h.shape[1])
      x = skips[-1] = aux = (x + h) / np.sqrt(2)
      continue
    else:
      x = _block(p, name, x, emb, song, filt)
    skips.append(x)
  for name in [n for n in names if n.startswith('dec.') and '_aux_' not in n]:
    if x.shape[1] != p[f'{name}.norm0.weight'].shape[0]:
      x = np.concatenate([x, skips.pop()], 1)
    x = _block(p, name, x, emb, song, filt)
  prefix = [n for n in names if n.endswith('_aux_norm')][0][:-4] if song else 'out_'
  x = _silu(_norm(x, p, prefix + 'norm', 1e-6 if song else 1e-5))
  return _conv(x, p[prefix + 'conv.weight'], p[prefix + 'conv.bias'])


def denoise(p, precond, model_type, x, sigma, class_labels, **kw):
  """EDM ``EDMPrecond`` / ``VPPrecond`` / ``VEPrecond`` forward (EDM Table 1), NCHW."""
  s = sigma[:, None, None, None]
  if precond == 'EDMPrecond':
    sd = 0.5
    c_skip, c_out = sd**2 / (s**2 + sd**2), s * sd / np.sqrt(s**2 + sd**2)
    c_in, c_noise = 1 / np.sqrt(sd**2 + s**2), np.log(sigma) / 4
  elif precond == 'VPPrecond':
    beta_d, beta_min, m = 19.9, 0.1, 1000
    c_skip, c_out, c_in = 1, -s, 1 / np.sqrt(s**2 + 1)
    t = (np.sqrt(beta_min**2 + 2 * beta_d * np.log(sigma**2 + 1)) - beta_min) / beta_d
    c_noise = (m - 1) * t
  else:
    c_skip, c_out, c_in, c_noise = 1, s, 1, np.log(0.5 * sigma)
  return c_skip * x + c_out * _network(p, model_type, c_in * x, c_noise, class_labels, **kw)


# ---------------------------------------------------------------------------- pickle writing


class _Ref:
  """An object pickled through ``__reduce__`` = (Global(module, name), args)."""

  def __init__(self, module, name, *args):
    self.func, self.args = torch_files.Global(module, name), args

  def __reduce__(self):
    return self.func, self.args


class ModuleDict:
  """Pickles as EDM's torch.nn.ModuleDict containers do: NEWOBJ of the class, BUILD of __dict__."""
  pickle_global = ('torch.nn.modules.container', 'ModuleDict')

  def __init__(self, state):
    self.__dict__.update(state)

  def __reduce_ex__(self, protocol):
    return copyreg.__newobj__, (type(self),), dict(self.__dict__)


def _legacy_storage_bytes(array: np.ndarray) -> bytes:
  """A legacy torch.save of one storage, as torch's ``_StorageBase.__reduce__`` embeds it."""
  f = io.BytesIO()
  for obj in (0x1950a86a20f9469cfc6c, 1001, {'protocol_version': 1001, 'little_endian': True,
                                               'type_sizes': {'short': 2, 'int': 4, 'long': 4}}):
    pickle.dump(obj, f, protocol=2)
  storage = object()
  pid = ('storage', torch_files.Global('torch', 'FloatStorage'), '9403', 'cuda:0', array.size,
         None)
  torch_files.GlobalPickler(f, 2, {id(storage): pid}).dump(storage)
  pickle.dump(['9403'], f, protocol=2)
  f.write(struct.pack('<q', array.size) + array.astype('<f4').tobytes())
  return f.getvalue()


def _tensor(array, parameter):
  array = np.ascontiguousarray(array, np.float32)
  storage = _Ref('torch.storage', '_load_from_bytes', _legacy_storage_bytes(array.reshape(-1)))
  strides = tuple(s // 4 for s in array.strides)
  tensor = _Ref('torch._utils', '_rebuild_tensor_v2', storage, 0, array.shape, strides, False,
                collections.OrderedDict())
  if parameter:
    return _Ref('torch._utils', '_rebuild_parameter', tensor, False, collections.OrderedDict())
  return tensor


def _persistent(class_name, state):
  meta = {'type': 'class', 'version': 6, 'module_src': 'raise RuntimeError("source executed")',
          'class_name': class_name, 'state': state}
  return _Ref('torch_utils.persistence', '_reconstruct_persistent_obj', meta)


def _module_state(tree):
  params, buffers, modules = (collections.OrderedDict() for _ in range(3))
  for key, value in tree.items():
    if isinstance(value, dict):
      child = _module_state(value)
      modules[key] = ModuleDict(child) if key in ('enc', 'dec') else _persistent('Module', child)
    elif key in ('resample_filter', 'freqs'):
      buffers[key] = _tensor(value, parameter=False)
    else:
      params[key] = _tensor(value, parameter=True)
  return {'training': False, '_parameters': params, '_buffers': buffers,
          '_non_persistent_buffers_set': set(), '_modules': modules, '_forward_hooks':
          collections.OrderedDict(), 'skip_scale': np.float64(np.sqrt(0.5))}


def write_network_pickle(path, state_dict, precond, init_kwargs):
  """An EDM training snapshot ``{'ema', 'loss_fn', 'augment_pipe', 'dataset_kwargs'}`` whose
  ``ema`` is ``precond(**init_kwargs)`` holding ``state_dict`` (names with ``model.``)."""
  tree = {}
  for name, value in state_dict.items():
    *parents, leaf = name.split('.')
    node = tree
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = value
  state = _module_state(tree)
  state['_init_args'] = ()
  state['_init_kwargs'] = dict(init_kwargs)
  data = {'ema': _persistent(precond, state),
          'loss_fn': _persistent('EDMLoss', {'P_mean': -1.2, 'P_std': 1.2, 'sigma_data': 0.5}),
          'augment_pipe': _persistent('AugmentPipe', {'p': 0.12, 'xflip': 1e8}),
          'dataset_kwargs': {'class_name': 'training.dataset.ImageFolderDataset',
                             'path': 'datasets/cifar10-32x32.zip'}}
  with open(path, 'wb') as f:
    torch_files.GlobalPickler(f, 4).dump(data)
