"""Fetching weights from a local HTTP server on 127.0.0.1: a good file is cached and verified, and
a corrupt file, an interrupted download or a server that is down leave nothing in the cache."""

import hashlib
import http.server
import os
import re
import socket
import subprocess
import sys
import threading

import pytest

from fastgen.assets import fetch

GOOD = os.urandom(3 * (1 << 20) + 17)  # more than one chunk
CORRUPT = GOOD[:-1] + bytes([GOOD[-1] ^ 1])


class _Handler(http.server.BaseHTTPRequestHandler):

  def do_GET(self):  # pylint: disable=invalid-name
    body = {'/good': GOOD, '/corrupt': CORRUPT, '/interrupted': GOOD}.get(self.path)
    if body is None:
      self.send_error(404)
      return
    self.send_response(200)
    self.send_header('Content-Length', str(len(body)))
    self.end_headers()
    self.wfile.write(body[:len(body) // 2] if self.path == '/interrupted' else body)
    self.wfile.flush()
    self.close_connection = True

  def log_message(self, *args):
    del args


@pytest.fixture(scope='module')
def server():
  httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  yield f'http://127.0.0.1:{httpd.server_address[1]}'
  httpd.shutdown()
  httpd.server_close()


def _file(url, content=GOOD):
  return fetch.File('weights.pth', url, hashlib.sha256(content).hexdigest())


def _cache(tmp_path):
  return sorted(os.listdir(tmp_path)) if tmp_path.exists() else []


def test_good_file_is_cached_verified_and_not_fetched_twice(server, tmp_path):
  path = fetch.download(_file(f'{server}/good'), str(tmp_path))
  assert path == str(tmp_path / 'weights.pth') and open(path, 'rb').read() == GOOD
  assert _cache(tmp_path) == ['weights.pth']
  # Cached and verified: no request (the URL now fails), same file.
  assert fetch.download(_file(f'{server}/missing'), str(tmp_path)) == path
  # A cached file that no longer verifies is fetched again.
  with open(path, 'r+b') as f:
    f.write(b'x')
  fetch.download(_file(f'{server}/good'), str(tmp_path))
  assert open(path, 'rb').read() == GOOD


@pytest.mark.parametrize('path, message', [
    ('/corrupt', r'SHA-256 [0-9a-f]{64} is not the published'),
    ('/interrupted', r'stopped after|IncompleteRead'),
    ('/missing', r'HTTP Error 404'),
])
def test_bad_download_caches_nothing(server, tmp_path, path, message):
  with pytest.raises(fetch.FetchError, match=message):
    fetch.download(_file(f'{server}{path}'), str(tmp_path))
  assert _cache(tmp_path) == []


def test_server_down_caches_nothing(tmp_path):
  with socket.socket() as s:  # a port nothing listens on
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  with pytest.raises(fetch.FetchError, match='nothing was cached'):
    fetch.download(_file(f'http://127.0.0.1:{port}/good'), str(tmp_path))
  assert _cache(tmp_path) == []


def test_cli_names_cache_and_errors(tmp_path, monkeypatch):
  env = dict(os.environ, FASTGEN_CACHE=str(tmp_path / 'cache'))
  listing = subprocess.run([sys.executable, '-m', 'fastgen.assets', 'list'], env=env,
                           capture_output=True, text=True, check=True).stdout
  assert 'pt_inception-2015-12-05-6726825d.pth' in listing and 'vgg16-397923af.pth' in listing
  bad = subprocess.run([sys.executable, '-m', 'fastgen.assets', 'fetch', 'nope'], env=env,
                       capture_output=True, text=True)
  assert bad.returncode == 2 and "invalid choice: 'nope'" in bad.stderr
  monkeypatch.setenv('FASTGEN_CACHE', str(tmp_path / 'cache'))
  with pytest.raises(FileNotFoundError, match='python -m fastgen.assets fetch inception'):
    fetch.cached_path('inception', 'pt_inception-2015-12-05-6726825d.pth')


def test_published_digests_are_sha256_and_agree_with_torch_hub_names():
  """torch hub names a file ``<name>-<first 8 hex digits of its SHA-256>.pth``."""
  files = [f for files in fetch.ASSETS.values() for f in files]
  assert len({f.name for f in files}) == len(files)
  for f in files:
    assert len(f.sha256) == 64 and int(f.sha256, 16) >= 0 and f.url.startswith('https://')
    assert f.url.endswith(f.name) or f.name == 'lpips-v0.1-vgg.pth'
  prefixes = {f.sha256: re.search(r'-([0-9a-f]{8})\.pth$', f.name) for f in files}
  hub_named = {digest: match.group(1) for digest, match in prefixes.items() if match}
  assert len(hub_named) == 2
  for digest, prefix in hub_named.items():
    assert digest.startswith(prefix)
