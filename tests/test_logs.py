"""Progress lines: throttled to one per interval, always one at the end, with done/total and ETA."""

import logging

from fastgen import logs


def _lines(caplog, every, total=3):
  caplog.clear()
  with caplog.at_level(logging.INFO, logger='absl'):
    progress = logs.Progress('solving', total, 'shards', every=every)
    for _ in range(total):
      progress.advance()
  return [r.getMessage() for r in caplog.records]


def test_progress_lines_are_throttled_and_end_with_the_total(caplog):
  assert len(_lines(caplog, every=1e9)) == 1
  lines = _lines(caplog, every=0.0)
  assert [line.split(' (')[0] for line in lines] == [f'solving: {i}/3 shards' for i in (1, 2, 3)]
  assert lines[-1].endswith('ETA 0:00:00)')


def test_format_eta():
  assert logs.format_eta(3723.9) == '1:02:03'
