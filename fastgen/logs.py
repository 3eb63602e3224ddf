"""fastgen's command-line output: libraries' INFO lines off at the default verbosity, and
progress lines (done/total, rate, ETA) for long work outside the training loop."""

import time

from absl import logging

_CHATTY_LIBRARIES = ('/orbax/', '/jax/_src/')


def quiet_libraries() -> None:
  """At the default ``--verbosity=0``, drop orbax's INFO lines (one per save and restore) and
  JAX's (compilation-cache hits) from absl's handler; ``--verbosity=1`` keeps them."""
  if logging.get_verbosity() >= logging.DEBUG:
    return
  logging.get_absl_handler().addFilter(
      lambda record: record.levelno >= 30 or  # Python logging.WARNING
      not any(part in record.pathname for part in _CHATTY_LIBRARIES))


def format_eta(seconds: float) -> str:
  seconds = int(seconds)
  return f'{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'


class Progress:
  """``what: done/total unit (rate unit/s, ETA h:mm:ss)`` at INFO, at most every ``every``
  seconds and once at the end."""

  def __init__(self, what: str, total: int, unit: str = '', every: float = 10.0):
    self.what, self.total, self.unit, self.every = what, total, unit, every
    self.done, self._start, self._logged = 0, time.time(), time.time()

  def advance(self, amount: int = 1) -> None:
    self.done += amount
    now = time.time()
    if now - self._logged < self.every and self.done < self.total:
      return
    self._logged = now
    rate = self.done / max(now - self._start, 1e-9)
    logging.info('%s: %d/%d %s (%.3g %s/s, ETA %s)', self.what, self.done, self.total,
                 self.unit, rate, self.unit, format_eta((self.total - self.done) / max(rate, 1e-9)))
