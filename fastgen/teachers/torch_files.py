"""PyTorch checkpoint files read and written without PyTorch and without running their code.

Read (:func:`load`):

* ``torch.save`` zip files (PyTorch >= 1.6): one folder holding ``data.pkl`` and ``data/<key>``.
  In ``data.pkl`` a tensor is ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
  requires_grad, hooks[, metadata])`` and a storage is the persistent id
  ``('storage', torch.FloatStorage, key, location, numel)`` naming the raw little-endian record
  ``data/<key>``.
* plain pickles such as EDM's network pickles, where a storage is
  ``torch.storage._load_from_bytes(b)`` and ``b`` is a legacy (pre-zip) ``torch.save`` of that
  storage: five pickles (magic number, protocol version, system info, the storage's persistent id,
  the list of storage keys) followed, per key, by an int64 element count and the raw bytes.
  Objects of ``torch_utils.persistence`` classes (EDM's networks carry their own source code and
  are rebuilt by ``_reconstruct_persistent_obj(meta)``) become inert :class:`PersistentObject`
  records of ``meta['class_name']`` and ``meta['state']``: their source is never compiled.
* ``.npz`` archives of named arrays.

The format is told by the first bytes, not the file name: ``PK\\x03\\x04`` a zip (a torch.save
file if it holds ``<dir>/data.pkl``, else an .npz), ``\\x80`` a pickle (protocol 2 or newer, as
torch and EDM write them).

Safety: unpickling may only reach the globals in ``_ALLOWED_GLOBALS``, each replaced by a
stand-in here that builds numpy arrays or plain records; any other global (``os.system``,
``builtins.eval``, a class with a ``__reduce__``, ...) raises :class:`UnsafePickleError` naming it
before anything is called. Sizes come from the file and are checked before anything is
allocated: a record must hold exactly its storage's bytes, and a tensor's view
(offset, size, stride) must lie inside its storage and not repeat its elements (a stride-0 view
of a 4-byte storage could otherwise ask for terabytes). Every error is a :class:`TorchFileError`
naming the file.

Written (:func:`save_torch_zip`): a state dict in the zip format above (pickle protocol 2,
64-byte-aligned records), loadable by ``torch.load(path, weights_only=True)``.
"""

import collections
import io
import os
import pickle
import struct
import types
import zipfile

import ml_dtypes
import numpy as np


class TorchFileError(pickle.UnpicklingError):
  """A file that is not a readable torch.save zip, pickle or .npz archive (the message names it)."""


class UnsafePickleError(TorchFileError):
  """A pickle that refers to something other than tensors and plain data."""


_STORAGE_DTYPES = {
    'DoubleStorage': np.float64, 'FloatStorage': np.float32, 'HalfStorage': np.float16,
    'BFloat16Storage': ml_dtypes.bfloat16, 'LongStorage': np.int64, 'IntStorage': np.int32,
    'ShortStorage': np.int16, 'CharStorage': np.int8, 'ByteStorage': np.uint8,
    'BoolStorage': np.bool_,
}
_STORAGE_NAMES = {np.dtype(v): k for k, v in _STORAGE_DTYPES.items()}
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
_ZIP_MAGIC = b'PK\x03\x04'  # a zip's first local file header
_PICKLE_PROTO = b'\x80'  # the PROTO opcode that opens every pickle of protocol >= 2


class StorageType:
  """Stand-in for a ``torch.<Type>Storage`` class: only its element dtype matters."""

  def __init__(self, name: str):
    self.name, self.dtype = name, np.dtype(_STORAGE_DTYPES[name])


class PersistentObject:
  """An object of a ``torch_utils.persistence`` class, as data: ``class_name`` and the ``state``
  dict its source code would have restored (``_parameters``, ``_buffers``, ``_modules``,
  ``_init_kwargs``, ...)."""

  def __init__(self, class_name: str, state: dict):
    self.class_name, self.state = class_name, state


class ModuleRecord:
  """Stand-in for ``torch.nn.ModuleDict`` (EDM's ``enc`` and ``dec``): unpickling only fills
  ``__dict__`` with its state."""


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _check_view(storage: np.ndarray, storage_offset, size, stride) -> None:
  """Refuse a view that reaches outside its storage or repeats its elements, before any copy.

  The view holds prod(size) elements at offsets o + sum_d i_d s_d (0 <= i_d < n_d); they lie in
  the storage iff o + sum_d (n_d - 1) s_d < len(storage), and a copy of them is no larger than
  the storage iff prod(size) <= len(storage).
  """
  if not (_is_int(storage_offset) and isinstance(size, tuple) and isinstance(stride, tuple)
          and len(size) == len(stride) and all(map(_is_int, size + stride))):
    raise pickle.UnpicklingError(f'malformed tensor view: offset {storage_offset!r:.40}, size '
                                 f'{size!r:.80}, stride {stride!r:.80}')
  if storage_offset < 0 or any(n < 0 for n in size) or any(s < 0 for s in stride):
    raise pickle.UnpicklingError(f'tensor of size {size}, stride {stride} and offset '
                                 f'{storage_offset} has a negative entry')
  numel = int(np.prod(size, dtype=object))
  if numel == 0:
    return
  end = storage_offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
  if end > storage.size:
    raise pickle.UnpicklingError(f'tensor of size {size} and stride {stride} at offset '
                                 f'{storage_offset} overruns its storage of {storage.size} '
                                 f'elements')
  if numel > storage.size:
    raise pickle.UnpicklingError(
        f'tensor of size {size} and stride {stride} repeats the elements of its storage '
        f'({numel} elements from {storage.size}): expanded views are not read; save '
        f'tensor.contiguous() instead')


def _rebuild_tensor(storage, storage_offset, size, stride, *unused_args):
  """``torch._utils._rebuild_tensor[_v2]``: a view of the flat storage, checked, copied out."""
  size, stride = tuple(size), tuple(stride)
  _check_view(storage, storage_offset, size, stride)
  flat = storage[storage_offset:]
  return np.lib.stride_tricks.as_strided(
      flat, size, tuple(s * storage.itemsize for s in stride)).copy()


def _rebuild_parameter(data, *unused_args):
  """``torch._utils._rebuild_parameter[_with_state]``: a Parameter is its data."""
  return data


def _numpy_scalar(dtype, data=None):
  """``numpy.core.multiarray.scalar`` for non-object dtypes."""
  if dtype.hasobject or not isinstance(data, bytes):
    raise UnsafePickleError(f'a numpy scalar of dtype {dtype}')
  return np.frombuffer(data, dtype)[0]


def _numpy_dtype(spec, align=False, copy=False):
  return np.dtype(spec, align, copy)


def _reconstruct_persistent_obj(meta):
  """``torch_utils.persistence._reconstruct_persistent_obj``: a record; the source is not run."""
  if not isinstance(meta, dict) or meta.get('type') != 'class' or not isinstance(
      meta.get('state'), dict):
    raise pickle.UnpicklingError('malformed torch_utils.persistence object')
  return PersistentObject(str(meta.get('class_name')), meta['state'])


_ALLOWED_GLOBALS = {
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('builtins', 'set'): set,
    ('builtins', 'frozenset'): frozenset,
    ('torch._utils', '_rebuild_tensor'): _rebuild_tensor,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('torch._utils', '_rebuild_parameter_with_state'): _rebuild_parameter,
    ('torch.storage', '_load_from_bytes'): lambda data: _load_legacy_storage(data),
    ('torch.nn.modules.container', 'ModuleDict'): ModuleRecord,
    ('torch_utils.persistence', '_reconstruct_persistent_obj'): _reconstruct_persistent_obj,
    ('numpy', 'dtype'): _numpy_dtype,
    **{(m, 'scalar'): _numpy_scalar for m in ('numpy.core.multiarray', 'numpy._core.multiarray')},
    **{('torch', name): StorageType(name) for name in _STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
  """Resolves only ``_ALLOWED_GLOBALS``; storages come from ``storage_loader(pid)``."""

  def __init__(self, file, storage_loader=None):
    super().__init__(file)
    self._storage_loader = storage_loader

  def find_class(self, module, name):
    try:
      return _ALLOWED_GLOBALS[module, name]
    except KeyError:
      raise UnsafePickleError(f'{module}.{name}') from None

  def persistent_load(self, pid):
    if (self._storage_loader is None or not isinstance(pid, tuple) or len(pid) < 5
        or pid[0] != 'storage' or not isinstance(pid[1], StorageType)):
      raise pickle.UnpicklingError(f'unsupported persistent id {pid!r:.200}')
    return self._storage_loader(pid)


def _load_legacy_storage(data: bytes) -> np.ndarray:
  """The flat array of a legacy ``torch.save`` of one storage (what ``_load_from_bytes`` reads)."""
  if not isinstance(data, bytes):
    raise pickle.UnpicklingError('torch.storage._load_from_bytes without bytes')
  f = io.BytesIO(data)
  if _RestrictedUnpickler(f).load() != _LEGACY_MAGIC:
    raise pickle.UnpicklingError('storage bytes are not a legacy torch.save file')
  _RestrictedUnpickler(f).load()  # protocol version
  _RestrictedUnpickler(f).load()  # system info
  pids = {}
  record = lambda pid: pids.setdefault(pid[2], pid)
  root = _RestrictedUnpickler(f, record).load()
  keys = _RestrictedUnpickler(f).load()
  arrays = {}
  for key in keys:
    header = f.read(8)
    if len(header) != 8 or key not in pids:
      raise pickle.UnpicklingError('truncated legacy storage')
    (numel,) = struct.unpack('<q', header)
    nbytes = numel * pids[key][1].dtype.itemsize
    if numel < 0 or nbytes > len(data) - f.tell():
      raise pickle.UnpicklingError(f'legacy storage of {numel} elements is longer than the '
                                   f'{len(data) - f.tell()} bytes left of it (truncated)')
    arrays[key] = np.frombuffer(f.read(nbytes), pids[key][1].dtype)
  if not isinstance(root, tuple) or root[2] not in arrays:
    raise pickle.UnpicklingError('legacy torch.save bytes hold something other than a storage')
  return arrays[root[2]]


def _load_zip(path: str):
  """A torch.save zip (``<dir>/data.pkl``) or an .npz archive (only ``.npy`` members)."""
  with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
    pkls = [n for n in names if n.endswith('data.pkl') and n.count('/') == 1]
    if not pkls and names and all(n.endswith('.npy') for n in names):
      with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}
    if len(pkls) != 1:
      raise pickle.UnpicklingError('a zip file but neither a torch.save file (no <dir>/data.pkl) '
                                   'nor an .npz archive')
    prefix = pkls[0][:-len('data.pkl')]
    byteorder_name = prefix + 'byteorder'
    if byteorder_name in names and archive.read(byteorder_name) != b'little':
      raise pickle.UnpicklingError('big-endian torch.save files are not supported')
    storages = {}

    def storage(pid):
      key, dtype, numel = pid[2], pid[1].dtype, pid[4]
      if key not in storages:
        name = f'{prefix}data/{key}'
        if not _is_int(numel) or numel < 0 or name not in names:
          raise pickle.UnpicklingError(f'storage {key!r:.40} of {numel!r:.40} elements has no '
                                       f'record {name!r:.80}')
        if archive.getinfo(name).file_size != numel * dtype.itemsize:
          raise pickle.UnpicklingError(
              f'record {name} holds {archive.getinfo(name).file_size} bytes, its storage of '
              f'{numel} {dtype} elements {numel * dtype.itemsize}')
        storages[key] = np.frombuffer(archive.read(name), dtype)
      return storages[key]
    with archive.open(pkls[0]) as f:
      return _RestrictedUnpickler(f, storage).load()


def _load_pickle(path: str):
  with open(path, 'rb') as f:
    return _RestrictedUnpickler(f, None).load()


# What a damaged or foreign file raises while it is parsed (the unpickler calls the stand-ins
# above with whatever arguments the file holds).
_PARSE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
                 AttributeError, OverflowError, struct.error, zipfile.BadZipFile)


def load(path: str):
  """The object in a torch.save zip file, a pickle, or an .npz file (a dict of arrays), with every
  tensor as a numpy array and persistence objects as :class:`PersistentObject`.

  Raises :class:`TorchFileError` (:class:`UnsafePickleError` for references to code) naming
  ``path`` for anything else: a truncated or corrupt zip or pickle, a foreign format, a tensor
  outside its storage.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path} not found')
  with open(path, 'rb') as f:
    magic = f.read(len(_ZIP_MAGIC))
  if magic.startswith(_ZIP_MAGIC):
    kind, read = 'zip file', _load_zip
  elif magic.startswith(_PICKLE_PROTO):
    kind, read = 'pickle', _load_pickle
  else:
    raise TorchFileError(f'{path} is neither a zip file (torch.save, .npz) nor a pickle of '
                         f'protocol 2 or newer: it begins with {magic!r}')
  try:
    return read(path)
  except UnsafePickleError as e:
    raise UnsafePickleError(f'refusing to load {e} from {path}: the pickle refers to code, not '
                            f'only to tensors and plain data') from None
  except zipfile.BadZipFile as e:
    raise TorchFileError(f'{path} is a truncated or corrupt zip file: {e}') from None
  except _PARSE_ERRORS as e:
    truncated = isinstance(e, EOFError) or 'truncated' in str(e)
    raise TorchFileError(f'{path} is a {"truncated" if truncated else "damaged or foreign"} '
                         f'{kind}: {e or type(e).__name__}') from None


# ------------------------------------------------------------------------------------- writing


class Global:
  """A reference to ``module.name`` written as a pickle GLOBAL, without importing ``module``."""

  def __init__(self, module: str, name: str):
    self.module, self.name = module, name

  def __call__(self, *args):
    raise TypeError(f'{self.module}.{self.name} is a reference to be pickled, not called')


_REBUILD_TENSOR_V2 = Global('torch._utils', '_rebuild_tensor_v2')
_STORAGE_GLOBALS = {dtype: Global('torch', name) for dtype, name in _STORAGE_NAMES.items()}


class _Tensor:
  """A C-contiguous array pickled as ``torch._utils._rebuild_tensor_v2`` over ``storage`` (an
  object the pickler writes as a persistent id)."""

  def __init__(self, array: np.ndarray, storage):
    self.array, self.storage = array, storage

  def __reduce__(self):
    strides = tuple(s // self.array.itemsize for s in self.array.strides)
    return (_REBUILD_TENSOR_V2,
            (self.storage, 0, self.array.shape, strides, False, collections.OrderedDict()))


class GlobalPickler(pickle._Pickler):  # pylint: disable=protected-access
  """The pure-Python pickler, writing :class:`Global` instances and classes or functions with a
  ``pickle_global = (module, name)`` attribute as GLOBAL opcodes; ``persistent_ids`` maps
  ``id(obj)`` of objects to write as persistent ids."""

  dispatch = dict(pickle._Pickler.dispatch)  # pylint: disable=protected-access

  def __init__(self, file, protocol=2, persistent_ids=None):
    super().__init__(file, protocol)
    self._persistent_ids = persistent_ids or {}

  def persistent_id(self, obj):
    return self._persistent_ids.get(id(obj))

  def save_global(self, obj, name=None):
    spec = (obj.module, obj.name) if isinstance(obj, Global) else getattr(obj, 'pickle_global',
                                                                        None)
    if spec is None:
      return super().save_global(obj, name)
    self.write(pickle.GLOBAL + f'{spec[0]}\n{spec[1]}\n'.encode('utf-8'))
    self.memoize(obj)

  dispatch[Global] = save_global
  dispatch[types.FunctionType] = save_global


def _aligned_zip_write(archive: zipfile.ZipFile, name: str, data: bytes, alignment: int = 64):
  """Store ``data`` uncompressed, padding the local header's extra field (id ``FB``, as
  PyTorch's writer does) so the payload starts at a multiple of ``alignment``."""
  info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
  header = 30 + len(name.encode('utf-8'))
  pad = (-(archive.fp.tell() + header + 4)) % alignment
  info.extra = b'FB' + struct.pack('<H', pad) + b'Z' * pad
  archive.writestr(info, data, compress_type=zipfile.ZIP_STORED)


def save_torch_zip(path: str, state_dict: dict[str, np.ndarray]) -> None:
  """Write ``state_dict`` (name -> array) as a ``torch.save`` zip file of an OrderedDict of
  CPU tensors; each array gets its own storage."""
  tensors = collections.OrderedDict()
  persistent_ids, records = {}, []
  for i, (name, array) in enumerate(state_dict.items()):
    array = np.require(array, requirements='C')
    if array.dtype not in _STORAGE_NAMES:
      raise ValueError(f'{name}: dtype {array.dtype} has no torch storage type')
    storage = object()
    persistent_ids[id(storage)] = ('storage', _STORAGE_GLOBALS[array.dtype], str(i), 'cpu',
                                   array.size)
    tensors[name] = _Tensor(array, storage)
    records.append((str(i), array.astype(array.dtype.newbyteorder('<')).tobytes()))
  buffer = io.BytesIO()
  GlobalPickler(buffer, 2, persistent_ids).dump(tensors)
  with zipfile.ZipFile(path, 'w') as archive:
    _aligned_zip_write(archive, 'archive/data.pkl', buffer.getvalue())
    _aligned_zip_write(archive, 'archive/byteorder', b'little')
    for key, data in records:
      _aligned_zip_write(archive, f'archive/data/{key}', data)
    _aligned_zip_write(archive, 'archive/version', b'3\n')
