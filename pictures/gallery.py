"""Visual results of a test or deraining run: comparison strips and a static HTML gallery.

    strip = gallery.compare_strip(rain, derained, clean, ['rainy  23.41 dB / 0.7712',
                                                          'derained  31.20 dB / 0.9410', 'clean'])
    gallery.write_compare('results/Demo/compare/51.jpg', strip)
    gallery.write_index('results/Demo', results['images'], 'ReMAEN on Demo')

Pure numpy/OpenCV (no TensorFlow). Images are float32 ``[H, W, 3]`` BGR arrays in [0, 1],
as everywhere in the project; strips are uint8 BGR, written by ``images.write_image`` (any
file name, atomic). The gallery ``index.html`` works offline: relative links only, inline
CSS, no script, nothing fetched from the network.
"""
import html
import os
import urllib.parse

import cv2
import numpy as np

from loading import images

DEFAULT_LABELS = ('rainy', 'derained', 'clean')
JPEG_QUALITY = 90
METRIC_KEYS = ('psnr', 'ssim', 'psnr_y', 'ssim_y')

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_MIN_FONT_SCALE = 0.3
_MAX_FONT_SCALE = 1.2
_MIN_CAPTION_HEIGHT = 16
_CAPTION_BACKGROUND = (40, 40, 40)
_CAPTION_TEXT = (255, 255, 255)


class GalleryWriteError(OSError):
    """A comparison image or the gallery page could not be written (names the path)."""


# ----------------------------------------------------------------------------- strips
def to_uint8(image):
    """Float image in [0, 1] -> uint8, rounded (the same arithmetic as ``utils.to_uint8``).

    Args:
      image: float array of any shape; values outside [0, 1] are clipped.

    Returns:
      uint8 array of the same shape, ``round(255 * image)``.
    """
    return np.clip(np.rint(np.asarray(image, np.float64) * 255.0), 0, 255).astype(np.uint8)


def _check_panels(rain, derained, clean):
    """Validates the panel images; returns them as a list (clean only when given)."""
    panels = [('rain', rain), ('derained', derained)]
    if clean is not None:
        panels.append(('clean', clean))
    shape = np.shape(rain)
    for name, image in panels:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3 or 0 in image.shape:
            raise ValueError('%s must be an [H, W, 3] image, got shape %s' % (name, image.shape))
        if not np.issubdtype(image.dtype, np.floating):
            raise ValueError('%s must be a float image in [0, 1], got dtype %s'
                             % (name, image.dtype))
        if image.shape != shape:
            raise ValueError('%s has shape %s, the rainy image %s; all panels must have the '
                             'same size' % (name, image.shape, shape))
    return [np.asarray(image) for _, image in panels]


def font_scale(width):
    """OpenCV font scale for captions under a panel ``width`` pixels wide.

    Args:
      width: panel width in pixels (> 0).

    Returns:
      float in [0.3, 1.2]: 0.5 for a 321-pixel panel, 0.75 for 481 pixels.
    """
    return float(np.clip(width / 640.0, _MIN_FONT_SCALE, _MAX_FONT_SCALE))


def _text_width(text, scale, thickness):
    return cv2.getTextSize(text, _FONT, scale, thickness)[0][0]


def _wrap(text, width, scale, thickness):
    """Greedy word wrap of ``text`` into lines at most ``width`` pixels wide where possible.

    A single word wider than ``width`` gets a line of its own (and is clipped when drawn).
    """
    lines = []
    for word in text.split():
        candidate = word if not lines else lines[-1] + ' ' + word
        if lines and _text_width(candidate, scale, thickness) <= width:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines or ['']


def _caption_lines(text, width):
    """Lines of one caption and the font scale to draw them with.

    The font follows the panel width (``font_scale``); a caption too wide for one line is
    first shrunk (down to 0.3), then wrapped at spaces.
    """
    scale = font_scale(width)
    while _text_width(text, scale, 1) > width - 4 and scale > _MIN_FONT_SCALE:
        scale = max(_MIN_FONT_SCALE, scale - 0.05)
    if _text_width(text, scale, 1) <= width - 4:
        return [text], scale
    return _wrap(text, width - 4, scale, 1), scale


def _line_height(scale):
    (_, height), baseline = cv2.getTextSize('Ag', _FONT, scale, 1)
    return height + baseline + 3


def _caption_bar(lines, scale, width, height):
    """[height, width, 3] uint8 dark bar with ``lines`` drawn in white, left aligned."""
    bar = np.empty((height, width, 3), np.uint8)
    bar[:] = _CAPTION_BACKGROUND
    (_, text_height), _ = cv2.getTextSize('Ag', _FONT, scale, 1)
    y = 3 + text_height
    for line in lines:
        cv2.putText(bar, line, (2, y), _FONT, scale, _CAPTION_TEXT, 1, cv2.LINE_AA)
        y += _line_height(scale)
    return bar


def compare_strip(rain, derained, clean=None, labels=None):
    """Side-by-side panels rainy | derained | clean, each with a caption bar under it.

    Args:
      rain: [H, W, 3] float BGR rainy image in [0, 1].
      derained: [H, W, 3] float BGR network output in [0, 1].
      clean: [H, W, 3] float BGR ground truth in [0, 1], or None (the strip then has two
        panels).
      labels: one caption per panel (list of str), e.g. ``'rainy  23.41 dB / 0.7712'``;
        None = ``'rainy'``, ``'derained'``, ``'clean'``. Long captions are shrunk and
        wrapped to the panel width.

    Returns:
      uint8 BGR image [H + C, P * W, 3], P = 3 panels (2 without ``clean``) and C >= 16 the
      caption height; panel ``i`` occupies rows ``[0, H)`` and columns ``[i W, (i + 1) W)``
      and holds ``to_uint8`` of its image exactly.
    """
    panels = _check_panels(rain, derained, clean)
    labels = list(DEFAULT_LABELS[:len(panels)] if labels is None else labels)
    if len(labels) != len(panels):
        raise ValueError('labels must give one caption per panel (%d), got %d'
                         % (len(panels), len(labels)))
    height, width = panels[0].shape[:2]
    captions = [_caption_lines(str(label), width) for label in labels]
    bar_height = max(_MIN_CAPTION_HEIGHT,
                     max(len(lines) * _line_height(scale) + 4 for lines, scale in captions))
    columns = [np.concatenate([to_uint8(image), _caption_bar(lines, scale, width, bar_height)])
               for image, (lines, scale) in zip(panels, captions)]
    return np.concatenate(columns, axis=1)


def write_compare(path, strip):
    """Write a strip as a JPEG (quality 90), creating its folder.

    Args:
      path: output file, normally ``<out_dir>/compare/<name>.jpg``.
      strip: uint8 [H, W, 3] BGR image (``compare_strip``).

    Returns:
      ``path``.

    Raises:
      GalleryWriteError (an OSError) naming the path when the folder or file cannot be written.
    """
    strip = np.asarray(strip)
    if strip.dtype != np.uint8 or strip.ndim != 3 or strip.shape[-1] != 3:
        raise ValueError('strip must be a uint8 [H, W, 3] image, got %s %s'
                         % (strip.dtype, strip.shape))
    folder = os.path.dirname(path)
    try:
        if folder:
            os.makedirs(folder, exist_ok=True)
        images.write_image(path, strip, (cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY))
    except (OSError, cv2.error, ValueError) as exc:
        raise GalleryWriteError('cannot write the comparison image %s (%s)'
                              % (path, getattr(exc, 'strerror', None) or exc)) from exc
    return path


# ----------------------------------------------------------------------------- index.html
def gain(row):
    """Output PSNR minus rainy-input PSNR of one results row, None without ground truth.

    Args:
      row: dict with ``psnr`` and ``input`` (``{'psnr': ...}``), floats or None.

    Returns:
      float in dB or None.
    """
    output = row.get('psnr')
    rainy = (row.get('input') or {}).get('psnr')
    if output is None or rainy is None:
        return None
    return float(output) - float(rainy)


def order_rows(rows):
    """Rows with ground truth sorted by gain (largest first), then the others in their order.

    Args:
      rows: list of results rows (see ``write_index``).

    Returns:
      A new list; the sort is stable, so equal gains keep their order.
    """
    measured = [row for row in rows if gain(row) is not None]
    unmeasured = [row for row in rows if gain(row) is None]
    return sorted(measured, key=lambda row: -gain(row)) + unmeasured


def _mean(values):
    values = [float(v) for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _fmt(value, digits, signed=False):
    if value is None:
        return ''
    return ('%+.*f' if signed else '%.*f') % (digits, value)


def _pair(values, key_psnr, key_ssim):
    """'24.42 dB / 0.8336' (PSNR / SSIM of one protocol), '' when unknown."""
    values = values or {}
    psnr, ssim = values.get(key_psnr), values.get(key_ssim)
    if psnr is None and ssim is None:
        return ''
    return '%s dB / %s' % (_fmt(psnr, 2) or '-', _fmt(ssim, 4) or '-')


def _url(path, out_dir):
    """HTML-escaped URL of ``path`` relative to ``out_dir`` (percent-encoded)."""
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(out_dir))
    return html.escape(urllib.parse.quote(relative.replace(os.sep, '/')), quote=True)


_CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; white-space: nowrap; }
th { background: #eee; }
td.name, th.name { text-align: left; }
td.image { text-align: center; }
td.image img { max-width: 60vw; height: auto; display: block; }
.note { color: #666; }
.up { color: #060; } .down { color: #a00; }
"""


def _summary_html(rows):
    """The summary table: mean metrics of the rainy input, the output and the gain."""
    measured = [row for row in rows if gain(row) is not None]
    head = ('<tr><th class="name">mean of %d image(s)</th><th>PSNR (dB)</th><th>SSIM</th>'
            '<th>PSNR-Y (dB)</th><th>SSIM-Y</th></tr>' % len(measured))
    rainy = [_mean((row.get('input') or {}).get(k) for row in measured) for k in METRIC_KEYS]
    output = [_mean(row.get(k) for row in measured) for k in METRIC_KEYS]
    gains = [None if a is None or b is None else b - a for a, b in zip(rainy, output)]
    digits = (2, 4, 2, 4)

    def line(label, values, signed=False):
        cells = ''.join('<td>%s</td>' % _fmt(v, d, signed) for v, d in zip(values, digits))
        return '<tr><td class="name">%s</td>%s</tr>' % (label, cells)

    return ('<table class="summary">%s%s%s%s</table>'
            % (head, line('rainy input', rainy), line('derained output', output),
               line('gain', gains, signed=True)))


def _row_html(row, out_dir, with_metrics):
    """One ``<tr>`` of the gallery: name, compare image (linked to the PNG), metrics."""
    name = html.escape(str(row.get('name', '')))
    image = '<span class="note">no comparison image</span>'
    if row.get('compare'):
        image = '<img src="%s" loading="lazy" alt="%s">' % (_url(row['compare'], out_dir), name)
    if row.get('output'):
        image = '<a href="%s">%s</a>' % (_url(row['output'], out_dir), image)
    cells = ['<td class="name">%s</td>' % name, '<td class="image">%s</td>' % image]
    if with_metrics:
        rainy = row.get('input') or {}
        cells += ['<td>%s</td>' % _pair(rainy, 'psnr', 'ssim'),
                  '<td>%s</td>' % _pair(rainy, 'psnr_y', 'ssim_y'),
                  '<td>%s</td>' % _pair(row, 'psnr', 'ssim'),
                  '<td>%s</td>' % _pair(row, 'psnr_y', 'ssim_y')]
        value = gain(row)
        css = '' if value is None else (' class="up"' if value >= 0 else ' class="down"')
        cells.append('<td%s>%s</td>' % (css, _fmt(value, 2, signed=True)))
    seconds = row.get('seconds')
    cells.append('<td>%s</td>' % _fmt(seconds, 2))
    return '<tr>%s</tr>' % ''.join(cells)


def _table_html(rows, out_dir, with_metrics):
    heads = ['<th class="name">name</th>', '<th>rainy | derained | clean</th>']
    if with_metrics:
        heads += ['<th>input PSNR / SSIM</th>', '<th>input PSNR-Y / SSIM-Y</th>',
                  '<th>output PSNR / SSIM</th>', '<th>output PSNR-Y / SSIM-Y</th>',
                  '<th>gain (dB)</th>']
    heads.append('<th>seconds</th>')
    body = ''.join(_row_html(row, out_dir, with_metrics) for row in rows)
    return '<table class="images"><tr>%s</tr>%s</table>' % (''.join(heads), body)


def _notes_html(rows):
    """The header note on ground truth and ordering (said once, not in every row)."""
    missing = sum(gain(row) is None for row in rows)
    if not rows:
        return '<p class="note">no images</p>'
    if missing == len(rows):
        return ('<p class="note">%d image(s), no ground truth: no PSNR/SSIM, shown in their '
                'order.</p>' % len(rows))
    note = ('%d image(s), sorted by gain (output PSNR minus rainy-input PSNR), largest first.'
            ' PSNR/SSIM: paper protocol (BGR, [0, 1]); PSNR-Y/SSIM-Y: BT.601 luma of uint8.'
            % len(rows))
    if missing:
        note += (' %d image(s) with no ground truth follow at the end, their metric cells '
                 'empty.' % missing)
    return '<p class="note">%s Click an image for the full derained PNG.</p>' % note


def index_html(out_dir, rows, title):
    """The text of ``index.html`` (see ``write_index``)."""
    rows = order_rows(list(rows))
    with_metrics = any(gain(row) is not None for row in rows)
    title = html.escape(str(title))
    parts = ['<!DOCTYPE html>', '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             '<title>%s</title><style>%s</style></head><body>' % (title, _CSS),
             '<h1>%s</h1>' % title, _notes_html(rows)]
    if with_metrics:
        parts.append(_summary_html(rows))
    parts += [_table_html(rows, out_dir, with_metrics), '</body></html>', '']
    return '\n'.join(parts)


def write_index(out_dir, rows, title):
    """Write ``<out_dir>/index.html``, a static gallery of a test or deraining run.

    It works offline: every link is relative to ``out_dir``, there is no script and nothing
    is loaded from the network (inline CSS only).

    Args:
      out_dir: the results folder (created when missing).
      rows: list of dicts as the entries of results.json ``images``: ``name``, ``output``
        (path of the derained PNG), ``psnr``, ``ssim``, ``psnr_y``, ``ssim_y`` (floats or
        None), ``input`` (the same four keys for the rainy image), ``seconds`` and
        ``compare`` (path of the comparison JPEG, or None). Paths are absolute or relative
        to the current directory.
      title: page title (str, escaped).

    Returns:
      The path of the written index.html.

    Raises:
      OSError naming the path when it cannot be written.
    """
    path = os.path.join(out_dir, 'index.html')
    text = index_html(out_dir, rows, title)
    try:
        os.makedirs(out_dir, exist_ok=True)
        images.atomic_write(path, lambda handle: handle.write(text))
    except OSError as exc:
        raise GalleryWriteError('cannot write the gallery %s (%s)'
                              % (path, exc.strerror or exc)) from exc
    return path
