"""The paper's figures: per-stage training curves and the edge-loss comparison.

    python figures.py curves logs/ReMAEN_Rain100L_32 --out figures/curves [--protocol y]
    python figures.py curves logs --out figures/curves          # one figure set per run
    python figures.py edge --with CKPT --without CKPT --image rain.png --clean clean.png \
        --out figures/edge.png

``curves`` draws the "recurrent rain removal analysis" figure of the paper from the
``curve.csv`` a training run writes to ``<logs_dir>/<run>/`` (header
``step,stage,psnr,ssim,psnr_y,ssim_y,seconds``, one row per stage per evaluation): one line
per stage, PSNR and SSIM against the training step (``PSNR.png``, ``SSIM.png``).

``edge`` derains one image with a model trained with the edge loss and one trained without
it, and shows rainy | without edge loss | with edge loss | clean, with PSNR/SSIM (paper
protocol) under each panel when the clean image is given.

matplotlib (Agg backend) and TensorFlow are imported inside the functions that need them,
so importing this module is cheap. User errors print one ``error: ...`` line on stderr and
exit with code 2.
"""
import argparse
import collections
import csv
import math
import os
import sys

import numpy as np

import checkpointing
from console import errors

CURVE_FILE = 'curve.csv'
CURVE_COLUMNS = ('step', 'stage', 'psnr', 'ssim', 'psnr_y', 'ssim_y', 'seconds')
# --protocol -> (PSNR column, SSIM column, PSNR axis label, SSIM axis label, title words).
PROTOCOLS = {
    'paper': ('psnr', 'ssim', 'PSNR (dB)', 'SSIM', 'paper protocol'),
    'y': ('psnr_y', 'ssim_y', 'PSNR-Y (dB)', 'SSIM-Y', 'Y-channel protocol'),
}
# Index of each metric in the tuples of ``read_curve``.
_CURVE_INDEX = {'psnr': 1, 'ssim': 2, 'psnr_y': 3, 'ssim_y': 4}

CurvePlots = collections.namedtuple('CurvePlots', ['paths', 'axes'])
CurvePlots.__doc__ = """Result of ``plot_curves``.

paths: {'PSNR': path, 'SSIM': path} of the written PNGs.
axes: {'PSNR': Axes, 'SSIM': Axes}, one Line2D per stage (label 'stage <s>'), for checks.
"""

EdgePanel = collections.namedtuple('EdgePanel', ['label', 'scores', 'caption'])
EdgePanel.__doc__ = """One panel of the edge figure.

label: panel title ('rainy', 'without edge loss', 'with edge loss', 'clean').
scores: ``metrics.evaluate`` dict against the clean image, or None (no clean image, or the
  clean panel itself).
caption: the text shown under the panel ('' when there are no scores).
"""


class FigureError(errors.UserError):
    """A user error (missing or malformed input, unwritable output): one-line message."""


# ----------------------------------------------------------------------------- matplotlib
def _pyplot_free_figure(width, height):
    """A matplotlib Figure on the Agg canvas (no pyplot state, nothing shown).

    Args:
      width, height: figure size in inches.

    Returns:
      matplotlib.figure.Figure.
    """
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path, dpi=100):
    """Save ``figure`` as PNG at ``path`` (folder created); FigureError naming the path."""
    try:
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        figure.savefig(path, format='png', dpi=dpi)
    except (OSError, ValueError) as exc:
        raise FigureError('cannot write %s (%s); choose another --out'
                          % (path, getattr(exc, 'strerror', None) or exc)) from exc
    return path


# ----------------------------------------------------------------------------- curves
def _number(text, kind, path, line, column):
    """Parse one csv cell; '' (not measured) -> None; FigureError on garbage."""
    text = (text or '').strip()
    if not text:
        if kind is int:
            raise FigureError('%s line %d: empty %s' % (path, line, column))
        return None
    try:
        value = kind(text)
    except ValueError:
        raise FigureError('%s line %d: %s is %r, not a number; fix or delete that line'
                          % (path, line, column, text)) from None
    return None if kind is float and math.isnan(value) else value


def read_curve(path):
    """Read a training run's ``curve.csv``.

    A resumed run appends to the file, so a step may appear twice for a stage: the last
    occurrence wins.

    Args:
      path: the csv file (header ``step,stage,psnr,ssim,psnr_y,ssim_y,seconds``; empty
        metric cells are read as None).

    Returns:
      dict ``stage (int, 1..S) -> list of (step, psnr, ssim, psnr_y, ssim_y)`` sorted by
      step; steps are ints, metrics floats (dB for PSNR, [-1, 1] for SSIM) or None.

    Raises:
      FigureError: missing or unreadable file, wrong header, malformed numbers.
    """
    try:
        with open(path, newline='') as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in CURVE_COLUMNS[:-1] if c not in (reader.fieldnames or ())]
            if missing:
                raise FigureError('%s is not a training curve: columns %s missing (expected '
                                  'the header %s)' % (path, ', '.join(missing),
                                                      ','.join(CURVE_COLUMNS)))
            latest = {}
            for record in reader:
                line = reader.line_num
                step = _number(record['step'], int, path, line, 'step')
                stage = _number(record['stage'], int, path, line, 'stage')
                values = tuple(_number(record[k], float, path, line, k)
                               for k in ('psnr', 'ssim', 'psnr_y', 'ssim_y'))
                latest[(stage, step)] = (step,) + values  # a resumed run: the last wins
    except OSError as exc:
        raise FigureError('cannot read %s (%s)' % (path, exc.strerror or exc)) from exc
    except (csv.Error, UnicodeDecodeError) as exc:
        raise FigureError('cannot read %s as csv (%s)' % (path, exc)) from exc
    curve = {}
    for (stage, _), row in latest.items():
        curve.setdefault(stage, []).append(row)
    return {stage: sorted(curve[stage]) for stage in sorted(curve)}


def find_curves(log_dir):
    """The training curves under ``log_dir``.

    Args:
      log_dir: a ``curve.csv`` file, a run folder holding one, or a logs root whose run
        subfolders hold one each.

    Returns:
      list of ``(run_name, csv_path, nested)``: ``nested`` is True for the runs of a logs
      root (their figures go to ``<out>/<run_name>/``).

    Raises:
      FigureError: ``log_dir`` does not exist or holds no curve.csv.
    """
    if os.path.isfile(log_dir):
        run = os.path.basename(os.path.dirname(os.path.abspath(log_dir)))
        return [(run, log_dir, False)]
    if not os.path.isdir(log_dir):
        raise FigureError('%s does not exist; pass a run folder of --logs_dir, its %s or the '
                          'logs folder itself' % (log_dir, CURVE_FILE))
    own = os.path.join(log_dir, CURVE_FILE)
    if os.path.isfile(own):
        return [(os.path.basename(os.path.abspath(log_dir)), own, False)]
    runs = [(name, os.path.join(log_dir, name, CURVE_FILE), True)
            for name in sorted(os.listdir(log_dir))
            if os.path.isfile(os.path.join(log_dir, name, CURVE_FILE))]
    if not runs:
        raise FigureError('no %s in %s or its subfolders; training writes it to '
                          '<logs_dir>/<run>/ at every evaluation' % (CURVE_FILE, log_dir))
    return runs


def _curve_axes(figure, curve, metric, label, title):
    """Draw one line per stage of ``metric`` on a new Axes of ``figure``; returns the Axes."""
    axes = figure.add_subplot(1, 1, 1)
    index = _CURVE_INDEX[metric]
    for stage, rows in curve.items():
        steps = [row[0] for row in rows]
        values = [np.nan if row[index] is None else row[index] for row in rows]
        axes.plot(steps, values, marker='o', markersize=3, linewidth=1.5,
                  label='stage %d' % stage)
    axes.set_xlabel('training step')
    axes.set_ylabel(label)
    axes.set_title(title)
    axes.grid(True, alpha=0.4)
    axes.legend(loc='best')
    figure.tight_layout()
    return axes


def plot_curves(curve, out_dir, run_name, protocol='paper'):
    """Write the per-stage PSNR and SSIM curves of one run (the paper's recurrence figure).

    Args:
      curve: ``read_curve`` result (stage -> rows sorted by step).
      out_dir: folder for ``PSNR.png`` and ``SSIM.png`` (created).
      run_name: named in the titles.
      protocol: 'paper' (psnr, ssim columns) or 'y' (psnr_y, ssim_y).

    Returns:
      CurvePlots with the two paths and Axes (one line per stage, x = steps, y = metric).
    """
    if protocol not in PROTOCOLS:
        raise ValueError('protocol must be one of %s, got %r' % (sorted(PROTOCOLS), protocol))
    psnr_key, ssim_key, psnr_label, ssim_label, words = PROTOCOLS[protocol]
    paths, axes = {}, {}
    for name, key, label in (('PSNR', psnr_key, psnr_label), ('SSIM', ssim_key, ssim_label)):
        figure = _pyplot_free_figure(6.4, 4.4)
        title = 'Recurrent rain removal: %s per stage\n%s (%s)' % (name, run_name, words)
        axes[name] = _curve_axes(figure, curve, key, label, title)
        paths[name] = _save(figure, os.path.join(out_dir, name + '.png'))
    return CurvePlots(paths, axes)


def curves_command(log_dir, out_dir, protocol='paper', log=print):
    """``figures.py curves``: figures of every run found under ``log_dir``.

    Args:
      log_dir: see ``find_curves``.
      out_dir: output folder; runs of a logs root get ``<out_dir>/<run>/``.
      protocol: 'paper' or 'y'.
      log: callable for progress lines (the written paths, notes on skipped runs).

    Returns:
      dict run_name -> CurvePlots.

    Raises:
      FigureError: nothing to plot (no curve, or every curve empty), unreadable files.
    """
    runs = find_curves(log_dir)
    plots = {}
    for run_name, path, nested in runs:
        curve = read_curve(path)
        if not curve:
            if not nested:
                raise FigureError('%s has no evaluations yet; wait for the first one '
                                  '(--sample_every) and try again' % path)
            log('note: %s has no evaluations yet; skipped' % path)
            continue
        target = os.path.join(out_dir, run_name) if nested else out_dir
        plots[run_name] = plot_curves(curve, target, run_name, protocol)
        for figure_path in plots[run_name].paths.values():
            log(figure_path)
    if not plots:
        raise FigureError('no run under %s has evaluations yet' % log_dir)
    return plots


# ----------------------------------------------------------------------------- edge figure
def _derain(checkpoint, image):
    """Derain one image with the checkpoint at ``checkpoint`` (the one call into the library).

    Args:
      checkpoint: checkpoint folder, prefix or ``.index`` file.
      image: [H, W, 3] float32 BGR in [0, 1].

    Returns:
      [H, W, 3] float32 BGR in [0, 1].

    Raises:
      checkpointing.CheckpointError: no checkpoint there, or it does not fit the stored settings.
    """
    import inference
    prefix = checkpointing.resolve(checkpoint)
    config = checkpointing.stored_config(os.path.dirname(prefix))
    derainer = inference.Derainer(prefix, config)
    try:
        return derainer(image)
    finally:
        derainer.close()


def derain_with(checkpoint, image):
    """Derain one image with a checkpoint (its folder's remaen_settings.json, else the paper's
    model).

    Args:
      checkpoint: checkpoint folder, prefix or ``.index`` file.
      image: [H, W, 3] float32 BGR in [0, 1].

    Returns:
      [H, W, 3] float32 BGR in [0, 1].
    """
    output = _derain(checkpoint, np.ascontiguousarray(image, np.float32))
    return np.clip(np.asarray(output, np.float32), 0.0, 1.0)


def _caption(scores):
    if scores is None:
        return ''
    return 'PSNR %.2f dB / SSIM %.4f' % (scores['psnr'], scores['ssim'])


def edge_panels(rain, without, with_edge, clean=None):
    """The panels of the edge figure and their scores (paper protocol, ``metrics.evaluate``).

    Args:
      rain, without, with_edge: [H, W, 3] float32 BGR in [0, 1]: the rainy image and the
        outputs of the models trained without and with the edge loss.
      clean: [H, W, 3] ground truth, or None (3 panels, no scores).

    Returns:
      list of EdgePanel (the image of panel i is ``(rain, without, with_edge, clean)[i]``).
    """
    import metrics
    images = [('rainy', rain), ('without edge loss', without), ('with edge loss', with_edge)]
    panels = []
    for label, image in images:
        scores = metrics.evaluate(image, clean) if clean is not None else None
        panels.append(EdgePanel(label, scores, _caption(scores)))
    if clean is not None:
        panels.append(EdgePanel('clean', None, 'ground truth'))
    return panels


def plot_edge(rain, without, with_edge, clean, out_path):
    """Write the edge-loss figure: rainy | without edge loss | with edge loss [| clean].

    Args:
      rain, without, with_edge, clean: see ``edge_panels`` (clean may be None).
      out_path: PNG file (folder created).

    Returns:
      (out_path, list of EdgePanel): the numbers shown under the panels.
    """
    panels = edge_panels(rain, without, with_edge, clean)
    images = [rain, without, with_edge, clean][:len(panels)]
    height, width = rain.shape[:2]
    panel_width = 3.2
    figure = _pyplot_free_figure(panel_width * len(panels),
                                 panel_width * height / width + 0.9)
    for i, (panel, image) in enumerate(zip(panels, images)):
        axes = figure.add_subplot(1, len(panels), i + 1)
        axes.imshow(np.clip(image[..., ::-1], 0.0, 1.0), interpolation='nearest')
        axes.set_title(panel.label, fontsize=11)
        axes.set_xlabel(panel.caption, fontsize=9)
        axes.set_xticks([])
        axes.set_yticks([])
    figure.tight_layout()
    # About one figure pixel per image pixel (100..300 dpi), so streaks stay visible.
    dpi = float(np.clip(width / (0.85 * panel_width), 100, 300))
    return _save(figure, out_path, dpi), panels


def _read(path):
    """``dataloader.read_image`` with DataError turned into FigureError."""
    import dataloader
    try:
        return dataloader.read_image(path)
    except dataloader.DataError as exc:
        raise FigureError(str(exc)) from exc


def edge_command(with_ckpt, without_ckpt, image_path, clean_path, out_path, log=print):
    """``figures.py edge``: read, derain with both checkpoints, draw, print the scores.

    Args:
      with_ckpt, without_ckpt: checkpoints trained with / without the edge loss.
      image_path: rainy image file.
      clean_path: its ground truth file, or None.
      out_path: output PNG.
      log: callable for the printed lines.

    Returns:
      (out_path, list of EdgePanel).

    Raises:
      FigureError: unreadable images, size mismatch, missing or incompatible checkpoints.
    """
    import metrics
    rain = _read(image_path)
    clean = _read(clean_path) if clean_path else None
    if clean is not None and clean.shape != rain.shape:
        raise FigureError('%s is %dx%d but %s is %dx%d; pass the matching clean image'
                          % (clean_path, clean.shape[1], clean.shape[0], image_path,
                             rain.shape[1], rain.shape[0]))
    if clean is not None and min(rain.shape[:2]) < metrics.SSIM_WIN_SIZE:
        raise FigureError('%s is %dx%d, too small for SSIM (at least %dx%d pixels); pass a '
                          'larger image' % (image_path, rain.shape[1], rain.shape[0],
                                            metrics.SSIM_WIN_SIZE, metrics.SSIM_WIN_SIZE))
    try:
        without = derain_with(without_ckpt, rain)
        with_edge = derain_with(with_ckpt, rain)
    except errors.user_errors() as exc:  # missing or incompatible checkpoints
        raise FigureError(str(exc)) from exc
    path, panels = plot_edge(rain, without, with_edge, clean, out_path)
    for panel in panels:
        if panel.scores is not None:
            log('%-18s %6.2f dB / %.4f  (Y: %6.2f dB / %.4f)'
                % (panel.label, panel.scores['psnr'], panel.scores['ssim'],
                   panel.scores['psnr_y'], panel.scores['ssim_y']))
    log(path)
    return path, panels


# ----------------------------------------------------------------------------- CLI
def build_parser():
    """The ``figures.py`` argument parser (subcommands ``curves`` and ``edge``)."""
    parser = argparse.ArgumentParser(
        prog='figures.py', description="Draw the paper's figures (matplotlib, PNG).")
    commands = parser.add_subparsers(dest='command', metavar='{curves,edge}')
    commands.required = True
    curves = commands.add_parser(
        'curves', help='per-stage PSNR/SSIM training curves from curve.csv')
    curves.add_argument('log_dir', metavar='LOG_DIR',
                        help='a run folder of --logs_dir, its curve.csv, or the logs folder '
                             '(one figure set per run)')
    curves.add_argument('--out', required=True, metavar='DIR',
                        help='output folder for PSNR.png and SSIM.png')
    curves.add_argument('--protocol', choices=sorted(PROTOCOLS), default='paper',
                        help='paper (PSNR/SSIM on BGR [0, 1], default) or y (BT.601 luma)')
    edge = commands.add_parser(
        'edge', help='rainy | without edge loss | with edge loss | clean')
    edge.add_argument('--with', dest='with_ckpt', required=True, metavar='CKPT',
                      help='checkpoint trained with the edge loss (folder or prefix)')
    edge.add_argument('--without', dest='without_ckpt', required=True, metavar='CKPT',
                      help='checkpoint trained without the edge loss (folder or prefix)')
    edge.add_argument('--image', required=True, metavar='RAIN_PATH', help='rainy image')
    edge.add_argument('--clean', metavar='CLEAN_PATH',
                      help='its ground truth (adds a panel and PSNR/SSIM under each one)')
    edge.add_argument('--out', required=True, metavar='FILE', help='output PNG')
    return parser


def main(argv=None):
    """Run the CLI.

    Args:
      argv: argument list (None = ``sys.argv[1:]``).

    Returns:
      Exit code: 0 on success, 2 on a user error (one ``error:`` line on stderr; argparse
      prints its usage line before it for bad flags); the others of ``errors.run``.
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or bad flags (2): return the code, do not exit
        return exc.code if isinstance(exc.code, int) else 2

    def command():
        if args.command == 'curves':
            curves_command(args.log_dir, args.out, args.protocol)
        else:
            edge_command(args.with_ckpt, args.without_ckpt, args.image, args.clean, args.out)
    return errors.run(command)


if __name__ == '__main__':
    sys.exit(main())
