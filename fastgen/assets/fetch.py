"""Standard weights, downloaded from their public release URLs into a cache, SHA-256 verified.

  python -m fastgen.assets fetch inception lpips-vgg      # into $FASTGEN_CACHE (~/.cache/fastgen)
  python -m fastgen.assets list

A file is streamed into a temporary file in the cache directory while its SHA-256 is computed,
and renamed to its final name (``os.replace``, atomic) only when the digest equals the published
one; a failed, interrupted or mismatching download removes the temporary file, so the cache only
ever holds complete, verified files. A cached file is re-verified before it is trusted.

* ``inception``: pytorch-fid's port of the FID Inception-v3 (TF graph 2015-12-05), the
  ``pytorch_fid`` detector of :mod:`fastgen.evaluation.inception`. NVIDIA's
  ``inception-2015-12-05.pkl`` (the detector of EDM's numbers) has no published SHA-256 that
  fastgen could pin, so it is not fetched: pass its path instead.
* ``lpips-vgg``: torchvision's VGG-16 ImageNet weights and the LPIPS v0.1 linear layers
  (Zhang et al. 2018), converted on first use by :mod:`fastgen.networks.lpips`.
"""

import argparse
import dataclasses
import hashlib
import http.client
import os
import sys
import tempfile
import time
import urllib.request

CACHE_ENV_VAR = 'FASTGEN_CACHE'
_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class File:
  name: str     # the file's name in the cache
  url: str      # its public release URL
  sha256: str   # the published digest of the file at ``url``


ASSETS = {
    'inception': (
        File('pt_inception-2015-12-05-6726825d.pth',
             'https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/'
             'pt_inception-2015-12-05-6726825d.pth',
             '6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2'),),
    'lpips-vgg': (
        File('vgg16-397923af.pth', 'https://download.pytorch.org/models/vgg16-397923af.pth',
             '397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0'),
        File('lpips-v0.1-vgg.pth',
             'https://raw.githubusercontent.com/richzhang/PerceptualSimilarity/master/lpips/'
             'weights/v0.1/vgg.pth',
             'a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868'),),
}


class FetchError(RuntimeError):
  """A download that failed, was cut short or does not have the published SHA-256."""


def cache_dir() -> str:
  """``$FASTGEN_CACHE``, else ``~/.cache/fastgen``."""
  return os.environ.get(CACHE_ENV_VAR) or os.path.join(os.path.expanduser('~'), '.cache',
                                                       'fastgen')


def fetch_command(name: str) -> str:
  return f'python -m fastgen.assets fetch {name}'


def sha256_of(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(_CHUNK), b''):
      digest.update(chunk)
  return digest.hexdigest()


def cached_path(name: str, file_name: str) -> str:
  """The cached path of ``file_name`` of asset ``name``; FileNotFoundError naming the command
  that fetches it if it is not there."""
  path = os.path.join(cache_dir(), file_name)
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} is missing; fetch it with: {fetch_command(name)}')
  return path


def _report(file: File, done: int, total: int | None, start: float) -> None:
  rate = done / max(time.time() - start, 1e-9) / 1e6
  size = f'{done / 1e6:.1f}/{total / 1e6:.1f} MB' if total else f'{done / 1e6:.1f} MB'
  print(f'fetch: {file.name}  {size}  {rate:.1f} MB/s', file=sys.stderr, flush=True)


def download(file: File, directory: str, timeout: float = 60.0) -> str:
  """``directory/file.name``, downloaded from ``file.url`` unless already there and verified."""
  target = os.path.join(directory, file.name)
  if os.path.exists(target) and sha256_of(target) == file.sha256:
    return target
  os.makedirs(directory, exist_ok=True)
  descriptor, partial = tempfile.mkstemp(dir=directory, prefix=f'.{file.name}.', suffix='.partial')
  try:
    digest, done, start, reported = hashlib.sha256(), 0, time.time(), time.time()
    with os.fdopen(descriptor, 'wb') as out, urllib.request.urlopen(file.url,
                                                                   timeout=timeout) as response:
      length = response.headers.get('Content-Length')
      total = int(length) if length else None
      for chunk in iter(lambda: response.read(_CHUNK), b''):
        out.write(chunk)
        digest.update(chunk)
        done += len(chunk)
        if time.time() - reported > 5:
          _report(file, done, total, start)
          reported = time.time()
      if total is not None and done != total:
        raise FetchError(f'{file.url}: the download stopped after {done} of {total} bytes')
      out.flush()
      os.fsync(out.fileno())
    if digest.hexdigest() != file.sha256:
      raise FetchError(f'{file.url}: SHA-256 {digest.hexdigest()} is not the published '
                       f'{file.sha256}; nothing was cached')
    os.replace(partial, target)
    return target
  except (OSError, http.client.HTTPException, ValueError) as e:  # URLError is an OSError
    raise FetchError(f'{file.url}: {type(e).__name__}: {e}; nothing was cached') from e
  finally:
    if os.path.exists(partial):
      os.remove(partial)


def fetch(name: str, directory: str = '') -> list[str]:
  """The cached paths of asset ``name``'s files, downloading those not yet cached."""
  if name not in ASSETS:
    raise FetchError(f'unknown asset {name!r}; known: {", ".join(ASSETS)}')
  return [download(file, directory or cache_dir()) for file in ASSETS[name]]


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(prog='python -m fastgen.assets', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  commands = parser.add_subparsers(dest='command', required=True)
  fetch_parser = commands.add_parser('fetch', help='download and verify assets into the cache')
  fetch_parser.add_argument('names', nargs='+', choices=sorted(ASSETS))
  commands.add_parser('list', help='the assets, their files and whether they are cached')
  args = parser.parse_args(argv)
  if args.command == 'list':
    for name, files in ASSETS.items():
      for file in files:
        cached = os.path.exists(os.path.join(cache_dir(), file.name))
        print(f'{name:10s} {file.name:40s} {"cached" if cached else "-":6s} {file.url}')
    return
  try:
    for name in args.names:
      for path in fetch(name):
        print(f'{name}: {path}')
  except FetchError as e:
    print(f'fastgen: error: {e}', file=sys.stderr)
    sys.exit(1)
