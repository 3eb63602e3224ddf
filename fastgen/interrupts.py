"""SIGTERM, SIGINT and SIGHUP as one exception, from a program's first moment, and blocks that a
signal must not cut short.

The command-line programs (``fastgen.main``, the EDM import) call :func:`install` before anything
slow: from then on a signal raises :class:`Interrupted` in the main thread, at once or at the
program's next :func:`raise_if_pending`, and the program turns it into one line and exit status
``128 + signum`` (nothing half-written is left: every file the programs write is written to a
temporary name and renamed). Inside :func:`deferred` a signal is only recorded: the block runs
whole (an orbax save, a rename, the training loop's step, save and exit) and polls
:func:`pending`; at its end a recorded signal is raised, unless the block acted on it
(``consume=True``).

This module imports nothing but the standard library, so installing it costs no start-up time.
"""

import contextlib
import signal
import sys
import threading

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Interrupted(BaseException):
  """A handled signal. Like KeyboardInterrupt, no ``except Exception`` stops it, so ``finally``
  blocks run on the way out."""

  def __init__(self, signum: int):
    super().__init__(signal.Signals(signum).name)
    self.signum = signum

  @property
  def name(self) -> str:
    return signal.Signals(self.signum).name


_state = {'deferring': False, 'pending': None}


def _handle(signum, frame):
  del frame
  if _state['pending'] is not None:
    return  # already interrupted: a second signal must not cut the clean-up short
  _state['pending'] = signum
  if not _state['deferring']:
    raise Interrupted(signum)


def _hide_swallowed_interrupt(unraisable):
  """``sys.unraisablehook``: an :class:`Interrupted` raised inside a gc callback or ``__del__``
  (where Python cannot propagate it) is not printed; :func:`raise_if_pending` raises it again."""
  if not isinstance(unraisable.exc_value, Interrupted):
    sys.__unraisablehook__(unraisable)


def _in_main_thread() -> bool:
  return threading.current_thread() is threading.main_thread()


def install(at_once: bool = True) -> None:
  """From now on SIGTERM, SIGINT and SIGHUP raise :class:`Interrupted` (main thread only): where
  the signal lands with ``at_once``, else at the program's next :func:`raise_if_pending` (an
  exception raised inside a library's import or initialisation can abort the process)."""
  if not _in_main_thread():
    return
  for signum in HANDLED_SIGNALS:
    signal.signal(signum, _handle)
  sys.unraisablehook = _hide_swallowed_interrupt
  _state['deferring'] = not at_once


def pending() -> int | None:
  """The signal received and not yet raised or consumed, if any."""
  return _state['pending']


def raise_if_pending() -> None:
  """Raise a signal that came but was not raised: deferred, or swallowed (a gc callback)."""
  if _state['pending'] is not None:
    raise Interrupted(_state['pending'])


@contextlib.contextmanager
def deferred(consume: bool = False):
  """Signals during the block are recorded (see :func:`pending`), not raised. At its end a
  recorded signal is raised, or with ``consume`` forgotten (the block acted on it). Outside a
  program that called :func:`install` (a library call, a test) the handlers are installed for
  the block and the previous ones restored after it."""
  previous = ({signum: signal.getsignal(signum) for signum in HANDLED_SIGNALS}
              if _in_main_thread() else {})
  for signum in previous:
    signal.signal(signum, _handle)
  was_deferring, _state['deferring'] = _state['deferring'], True
  try:
    yield
  finally:
    _state['deferring'] = was_deferring
    for signum, handler in previous.items():
      signal.signal(signum, handler)
    if consume:
      _state['pending'] = None
  if not was_deferring:
    raise_if_pending()
