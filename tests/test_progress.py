"""Progress reporting: plain bounded lines in logs, tqdm on terminals, duration notes."""
import io

import pytest

import conftest  # noqa: F401  (project root on sys.path)
from console import progress


class FakeClock(object):
    """A settable clock in seconds (``Progress(clock=...)``)."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def run_log_mode(total, seconds_per_unit, every_seconds=30, **postfix):
    """Simulate ``total`` updates in log mode; returns the printed lines."""
    clock, stream = FakeClock(), io.StringIO()
    with progress.Progress(total, 'train', stream=stream, every_seconds=every_seconds,
                           clock=clock) as bar:
        assert not bar.tty and bar._bar is None        # StringIO is not a terminal
        for _ in range(total):
            clock.now += seconds_per_unit
            bar.update(1, **postfix)
    return stream.getvalue()


def test_log_mode_prints_bounded_plain_lines_and_a_final_line():
    text = run_log_mode(1000, 0.5, loss='0.0123', psnr='31.02')    # 500 s of work
    lines = text.splitlines()
    assert '\r' not in text
    # One line per 30 s at most (500 / 30 -> 16), plus the final one.
    assert 2 <= len(lines) <= 500 // 30 + 1
    assert lines[0] == ('train: 60/1000 it (6.0%), 2.0 it/s, ~8 min left, '
                        'loss=0.0123 psnr=31.02')
    assert lines[-1].startswith('train: 1000/1000 it (100.0%), 2.0 it/s, done in 8 min')


def test_log_mode_slow_units_and_hours_left():
    clock, stream = FakeClock(), io.StringIO()
    with progress.Progress(40000, 'train', stream=stream, clock=clock, initial=1000) as bar:
        clock.now += 2.41 * 200
        bar.update(200, loss='0.0123')
        bar.write('eval: 31.0 dB')
    lines = stream.getvalue().splitlines()
    # The rate counts only this run's 200 iterations (a resumed training starts at 1000).
    assert lines[0] == 'train: 1200/40000 it (3.0%), 2.41 s/it, ~26 h left, loss=0.0123'
    assert lines[1] == 'eval: 31.0 dB'
    assert lines[2] == 'train: 1200/40000 it (3.0%), 2.41 s/it, stopped after 8 min, loss=0.0123'


def test_quick_jobs_print_only_the_final_line_and_disabled_prints_none():
    assert run_log_mode(5, 0.05).splitlines() == [
        'train: 5/5 it (100.0%), 20.0 it/s, done in 0 s']
    stream = io.StringIO()
    with progress.Progress(3, 'derain', unit='img', stream=stream, enabled=False) as bar:
        bar.update(3)
        bar.write('51: 30.00 dB')
    assert stream.getvalue() == '51: 30.00 dB\n'


def test_tty_mode_uses_tqdm():
    tqdm = pytest.importorskip('tqdm')
    stream = io.StringIO()
    with progress.Progress(10, 'derain', unit='img', stream=stream, tty=True) as bar:
        assert isinstance(bar._bar, tqdm.tqdm)
        bar.update(4, psnr='30.00')
        bar.write('a result line')
    text = stream.getvalue()
    assert '\r' in text and 'a result line\n' in text and '10/10' not in text
    assert '4/10' in text and 'psnr=30.00' in text


@pytest.mark.parametrize('seconds, text', [
    (0, '0 s'), (44.6, '45 s'), (59.4, '59 s'), (60, '1 min'), (170, '3 min'),
    (3599, '1.0 h'), (5400, '1.5 h'), (26 * 3600 + 100, '26 h')])
def test_format_duration(seconds, text):
    assert progress.format_duration(seconds) == text


def test_estimate_note():
    stream = io.StringIO()
    note = progress.estimate_note(170, 'tiled deraining', stream=stream)
    assert note == 'note: tiled deraining will take about 3 min'
    assert stream.getvalue() == note + '\n'
    assert progress.estimate_note(5, 'x', stream=False) == 'note: x will take about 5 s'


def test_tile_progress_one_progress_per_image_with_a_note():
    clock, stream = FakeClock(), io.StringIO()
    callback = progress.TileProgress(stream=stream, tty=False, clock=clock)
    for image in range(2):
        for done in range(1, 9):                  # 8 tile runs of 40 s per image
            clock.now += 40
            callback(done, 8)
    text = stream.getvalue()
    lines = text.splitlines()
    assert '\r' not in text
    assert lines.count('note: the rest of this image (6 tile runs) will take about 4 min') == 2
    finals = [line for line in lines if 'done in' in line]
    assert finals == ['tiles: 8/8 tile (100.0%), 40.00 s/tile, done in 5 min'] * 2


def test_final_line_once_even_past_total():
    clock, stream = FakeClock(), io.StringIO()
    with progress.Progress(2, 'derain', unit='img', stream=stream, every_seconds=1,
                           clock=clock) as bar:
        for _ in range(4):
            clock.now += 5
            bar.update(1)
    assert stream.getvalue().splitlines() == [
        'derain: 1/2 img (50.0%), 5.00 s/img, ~5 s left',
        'derain: 2/2 img (100.0%), 5.00 s/img, done in 10 s']
