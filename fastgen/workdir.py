"""A training run's workdir: created (or checked) before any work, and locked while a trainer uses
it, so that a second trainer on the same workdir is refused instead of interleaving metrics and
checkpoints with the first.

The lock is ``<workdir>/lock``, held with ``flock`` for as long as the trainer runs and holding
``{"pid", "host", "since"}`` of the holder for the message another trainer gets. The kernel
releases the lock when its process dies however it dies (SIGKILL, a lost node), so a lock left
by a killed trainer is stale by construction: the next trainer takes it over, and says whose it
was. On network file systems flock works where the client supports it (Linux NFS emulates it
with POSIX locks). In a multi-host run process 0 alone takes the lock: one lock per run.
"""

import datetime
import errno
import fcntl
import json
import os
import socket

from absl import logging

LOCK_FILE = 'lock'


class WorkdirError(RuntimeError):
  """A workdir that cannot be used: not a directory, not writable, or in use by another trainer."""


def _describe(error: OSError, path: str) -> str:
  reason = error.strerror or type(error).__name__
  if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
    return f'{path} is not writable ({reason})'
  if error.errno == errno.EEXIST:
    return f'{path} exists and is not a directory'
  if error.errno == errno.ENOTDIR:
    return f'{path} lies under a file, not a directory'
  if error.errno == errno.ENOSPC:
    return f'no space left on the device of {path}'
  return f'cannot use {path}: {reason}'


def create(workdir: str) -> None:
  """Create ``workdir`` (and its parents) if needed; a :class:`WorkdirError` naming the path if it
  is a file, lies under one, or cannot be created."""
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise WorkdirError(f'--workdir: {_describe(e, e.filename or workdir)}') from e
  if not os.path.isdir(workdir):
    raise WorkdirError(f'--workdir: {workdir} is not a directory')


def _holder(path: str) -> dict:
  try:
    with open(path) as f:
      return json.loads(f.read() or '{}')
  except (OSError, ValueError):
    return {}


def _holder_text(holder: dict) -> str:
  if not holder:
    return 'a process that did not say who it is'
  return (f'pid {holder.get("pid", "?")} on host {holder.get("host", "?")}, since '
          f'{holder.get("since", "?")}')


class Lock:
  """``with Lock(workdir):`` holds ``<workdir>/lock`` for the block; :class:`WorkdirError` if
  another live process holds it. ``enabled=False`` (processes other than 0) does nothing."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.path = os.path.join(workdir, LOCK_FILE)
    self.enabled = enabled
    self._file = None

  def __enter__(self):
    if not self.enabled:
      return self
    try:
      handle = open(self.path, 'a+')  # pylint: disable=consider-using-with
    except OSError as e:
      raise WorkdirError(f'--workdir: {_describe(e, os.path.dirname(self.path))}') from e
    try:
      fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      handle.close()
      if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
        raise WorkdirError(f'cannot lock {self.path}: {e.strerror}') from e
      raise WorkdirError(
          f'{os.path.dirname(self.path)} is in use by another trainer ({_holder_text(_holder(self.path))}); '
          f'wait for it to finish or stop it, or use another --workdir') from None
    previous = _holder(self.path)
    if previous:
      logging.warning('took over the lock of %s, which is no longer running (%s)',
                      os.path.dirname(self.path), _holder_text(previous))
    try:
      handle.seek(0)
      handle.truncate()
      handle.write(json.dumps({
          'pid': os.getpid(), 'host': socket.gethostname(),
          'since': datetime.datetime.now().isoformat(timespec='seconds')}))
      handle.flush()
    except OSError as e:
      handle.close()
      raise WorkdirError(f'--workdir: {_describe(e, self.path)}') from e
    self._file = handle
    return self

  def __exit__(self, *exc_info):
    if self._file is None:
      return
    try:  # an empty lock file: released cleanly, nobody to take over from
      self._file.seek(0)
      self._file.truncate()
    except OSError:
      pass
    fcntl.flock(self._file, fcntl.LOCK_UN)
    self._file.close()
    self._file = None
