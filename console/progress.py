"""Progress reporting that behaves both in a terminal and in a log file.

On a terminal (``stream.isatty()``) ``Progress`` draws a tqdm bar (redrawn in place with
``\\r``). Anywhere else (``nohup``, ``> train.log``, CI) a bar would fill the log with
carriage returns, so it prints plain lines instead, at most one every ``every_seconds``
plus a final one::

    train: 1200/40000 it (3.0%), 2.41 s/it, ~26 h left, loss=0.0123 psnr=31.02

``TileProgress`` adapts it to the ``progress(done, total)`` callbacks of tiled inference, and
``estimate_note`` announces work that will take more than a minute.
"""
import sys
import time

ESTIMATE_THRESHOLD_SECONDS = 60.0


def format_duration(seconds):
    """A short human duration: '45 s', '3 min', '2.5 h', '26 h'.

    Args:
      seconds: float >= 0 (negative values are shown as 0 s).

    Returns:
      str.
    """
    seconds = max(0.0, float(seconds))
    if seconds < 59.5:
        return '%d s' % round(seconds)
    if seconds < 59.5 * 60:
        return '%d min' % round(seconds / 60.0)
    hours = seconds / 3600.0
    return ('%.1f h' % hours) if hours < 9.95 else ('%d h' % round(hours))


def format_rate(seconds_per_unit, unit):
    """'2.41 s/it' for slow work, '12.5 it/s' for fast work (None -> '? s/it')."""
    if not seconds_per_unit:
        return '? s/%s' % unit
    if seconds_per_unit >= 1.0:
        return '%.2f s/%s' % (seconds_per_unit, unit)
    return '%.1f %s/s' % (1.0 / seconds_per_unit, unit)


def estimate_note(seconds, what, stream=None):
    """Print and return ``note: <what> will take about <duration>``.

    Args:
      seconds: the estimated duration (float >= 0).
      what: what will take that long, e.g. ``'tiled deraining of rain.jpg'``.
      stream: where to print (default sys.stdout; False = only return the text).

    Returns:
      str, the note without a newline.
    """
    text = 'note: %s will take about %s' % (what, format_duration(seconds))
    if stream is not False:
        stream = stream or sys.stdout
        stream.write(text + '\n')
        stream.flush()
    return text


class Progress(object):
    """A progress bar on a terminal, plain periodic lines in logs.

    Use as a context manager::

        with Progress(len(pairs), 'derain', unit='img') as bar:
            for pair in pairs:
                ...
                bar.write('%s: %.2f dB' % (pair.name, psnr))   # never breaks the bar
                bar.update(1, psnr='%.2f' % psnr)

    Args:
      total: number of units of the whole job (int >= 0).
      desc: short label at the start of each line ('train', 'derain', 'tiles').
      unit: unit name ('it', 'img', 'tile').
      stream: text stream (default: sys.stdout at construction time).
      every_seconds: minimum time between two plain lines (the final line is always shown).
      tty: force the terminal (True) or the log (False) behaviour; None = ``stream.isatty()``.
      initial: units already done (a resumed training); rates count only the new ones.
      enabled: False shows no bar and no progress lines (``write`` still prints).
      clock: callable returning seconds (tests inject a fake one; default time.monotonic).
    """

    def __init__(self, total, desc, unit='it', stream=None, every_seconds=30, tty=None,
                 initial=0, enabled=True, clock=time.monotonic):
        self.total, self.desc, self.unit = int(total), desc, unit
        self.stream = stream or sys.stdout
        self.every_seconds, self.enabled, self.clock = float(every_seconds), enabled, clock
        self.initial = self.n = int(initial)
        self.postfix = {}
        self.started = self.last_line = clock()
        self.final_shown = self.closed = False
        if tty is None:
            tty = bool(getattr(self.stream, 'isatty', lambda: False)())
        self.tty = tty
        self._bar = self._make_bar() if (enabled and tty) else None

    def _make_bar(self):
        """A tqdm bar on ``stream``, or None (plain lines) when tqdm is not installed."""
        try:
            from tqdm import tqdm
        except ImportError:
            return None
        return tqdm(total=self.total, desc=self.desc, unit=self.unit, initial=self.initial,
                    file=self.stream, dynamic_ncols=True, leave=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # ------------------------------------------------------------------------- reporting
    def update(self, n=1, **postfix):
        """Count ``n`` more units; keyword values are shown after the numbers (key=value)."""
        self.n += n
        self.postfix.update(postfix)
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix(refresh=False, **postfix)
            self._bar.update(n)
        elif self.enabled and not self.final_shown:
            if self.n >= self.total:
                self._print_line(final=True)               # the final line, once
            elif self.clock() - self.last_line >= self.every_seconds:
                self._print_line()

    def rewind(self, n):
        """Take back ``n`` units (a training run rolled back to an earlier iteration); the rate
        still counts the time spent on them."""
        self.n -= n
        self.initial -= n
        if self._bar is not None:
            self._bar.n -= n
            self._bar.initial -= n
            self._bar.refresh()

    def write(self, line):
        """Print one line of text (e.g. a per-image result) without breaking the bar."""
        if line is None:
            return
        if self._bar is not None:
            self._bar.write(str(line), file=self.stream)
        else:
            self.stream.write('%s\n' % line)
            self.stream.flush()

    def close(self):
        """Final line (log mode; 'stopped after' if short of total) or bar closed (terminal).

        In log mode the final line is printed as soon as ``total`` is reached, else here.
        Called by ``__exit__``.
        """
        if self.closed:
            return
        self.closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and not self.final_shown:
            self._print_line(final=True)

    # ------------------------------------------------------------------------- numbers
    def seconds_per_unit(self):
        """Mean seconds per unit done since construction, or None before the first."""
        done = self.n - self.initial
        return (self.clock() - self.started) / done if done > 0 else None

    def seconds_left(self):
        """Estimated seconds until ``total`` at the mean rate so far, or None."""
        rate = self.seconds_per_unit()
        return None if rate is None else max(0, self.total - self.n) * rate

    def line(self, final=False):
        """The plain progress line (no newline), e.g. ``train: 12/40 it (30.0%), ...``."""
        percent = 100.0 * self.n / self.total if self.total else 100.0
        parts = ['%s: %d/%d %s (%.1f%%)' % (self.desc, self.n, self.total, self.unit, percent),
                 format_rate(self.seconds_per_unit(), self.unit)]
        if final:
            parts.append('%s %s' % ('done in' if self.n >= self.total else 'stopped after',
                                    format_duration(self.clock() - self.started)))
        elif self.seconds_left() is not None:
            parts.append('~%s left' % format_duration(self.seconds_left()))
        text = ', '.join(parts)
        if self.postfix:
            text += ', ' + ' '.join('%s=%s' % item for item in self.postfix.items())
        return text

    def _print_line(self, final=False):
        self.stream.write(self.line(final) + '\n')
        self.stream.flush()
        self.last_line = self.clock()
        self.final_shown = self.final_shown or final


class TileProgress(object):
    """A ``progress(done, total)`` callback for tiled inference (``tiling.derain_tiled``).

    A new ``Progress`` starts at the first call of an image (``done`` not above the last
    one, or another ``total``) and closes when ``done`` reaches ``total``. Rates and the time
    left are measured from the end of that image's first tile run (the time before it is
    unknown to a callback). After the second run, if the rest of the image will take longer
    than ``note_after`` seconds, an ``estimate_note`` line is printed.

    Args:
      desc: label of the lines ('tiles').
      stream, every_seconds, tty, clock: see ``Progress``.
      note_after: seconds of estimated remaining work that trigger the note.
    """

    def __init__(self, desc='tiles', stream=None, every_seconds=30, tty=None,
                 clock=time.monotonic, note_after=ESTIMATE_THRESHOLD_SECONDS):
        self.desc, self.stream, self.every_seconds = desc, stream, every_seconds
        self.tty, self.clock, self.note_after = tty, clock, note_after
        self.bar, self.noted = None, False

    def __call__(self, done, total):
        bar = self.bar
        if bar is None or done <= bar.n or total != bar.total:
            self.close()
            self.bar = Progress(total, self.desc, unit='tile', stream=self.stream,
                                every_seconds=self.every_seconds, tty=self.tty,
                                initial=done, clock=self.clock)
            self.noted = False
        else:
            bar.update(done - bar.n)
        bar = self.bar
        if not self.noted and bar.n > bar.initial and done < total:
            self.noted = True
            left = bar.seconds_left()
            if left > self.note_after:
                bar.write(estimate_note(left, 'the rest of this image (%d tile runs)'
                                        % (total - done), stream=False))
        if done >= total:
            self.close()

    def close(self):
        """Close the current image's progress (prints its final line in logs)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
