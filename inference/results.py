"""Deraining a set of pairs and writing what it gives: images, metrics, strips, the gallery.

    derainer = inference.Derainer(prefix, model.ModelConfig())
    results = inference.derain_pairs(derainer, pairs, 'results/Demo', 'Demo')
    derainer.close()

``derain_pairs`` writes, for every image, the derained PNG, a comparison strip
``compare/<name>.jpg`` (rainy | derained | clean), and at the end ``results.json``,
``results.csv`` and ``index.html`` (a static gallery sorted by gain); what is done is kept on a
fault. Per-stage metrics are measured on the per-stage outputs of the network.
``results_folder`` keeps results of different inputs apart, ``check_output_dir`` refuses an
output folder that cannot be written. Asks ``metrics`` for PSNR/SSIM and ``pictures.gallery``
for the strips and the page.
"""
import csv
import json
import os
import sys
import time

import numpy as np

import dataloader
import metrics
import utils
from console.errors import UsageError
from console.progress import Progress
from loading import images
from pictures import gallery


METRIC_KEYS = ('psnr', 'ssim', 'psnr_y', 'ssim_y')


RESULTS_JSON = 'results.json'


# ----------------------------------------------------------------------------- measuring
class Measurer(object):
    """Both metric protocols of one output, tolerant of images too small for SSIM.

    SSIM's 11x11 Gaussian window needs images of at least 11x11 pixels; for smaller ones
    PSNR is measured, SSIM is None and one note is printed per run.
    """

    def __init__(self, log=print):
        self.log, self.noted = log, False

    def __call__(self, output, clean):
        """Dict of the four metrics (python floats, SSIMs None for tiny images)."""
        height, width = clean.shape[:2]
        if min(height, width) >= metrics.SSIM_WIN_SIZE:
            return metrics.evaluate(output, clean)
        if not self.noted:
            self.log('note: images smaller than %dx%d pixels (e.g. %dx%d) get PSNR only; '
                     'their SSIM is null' % (metrics.SSIM_WIN_SIZE, metrics.SSIM_WIN_SIZE,
                                             width, height))
            self.noted = True
        return {'psnr': metrics.psnr(output, clean), 'ssim': None,
                'psnr_y': metrics.psnr_y(output, clean), 'ssim_y': None}


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _fmt(value, digits):
    return '   n/a' if value is None else ('%.*f' % (digits, value))


def _none_metrics():
    return {k: None for k in METRIC_KEYS}


# ----------------------------------------------------------------------------- output folders
def _valid_name(name):
    """``name`` as valid UTF-8 text: bytes of a file name that are not UTF-8 (surrogate
    escapes of ``os.listdir``) become U+FFFD, as file managers show them."""
    return name.encode('utf-8', 'surrogateescape').decode('utf-8', 'replace')


def _output_name(name, taken):
    """The output name of an image: ``_valid_name`` made unique within ``taken`` (added)."""
    base = unique = _valid_name(name)
    count = 1
    while unique in taken:
        count += 1
        unique = '%s_%d' % (base, count)
    taken.add(unique)
    return unique


def output_names(pairs):
    """The output name of every pair, in order, as ``derain_pairs`` names them (results.json
    ``name``, ``<name>.png``): the pair names as valid UTF-8, made unique in the list."""
    taken = set()
    return [_output_name(pair.name, taken) for pair in pairs]


def _safe_output_path(out_dir, name, pair):
    path = os.path.join(out_dir, name + '.png')
    inputs = {os.path.realpath(p) for p in (pair.rain_path, pair.clean_path) if p}
    if os.path.realpath(path) in inputs:
        raise UsageError('output %s would overwrite an input image; choose another --test_dir'
                         % path)
    return path


def _results_source(folder):
    """The input whose results ``folder`` holds (results.json ``source``), or None when the
    folder may be written by anyone: missing, empty, or results of an earlier version
    (without ``source``). A folder with other files and no readable results.json, or a file,
    belongs to 'another input'."""
    try:
        if not os.listdir(folder):
            return None
    except FileNotFoundError:
        return None
    except OSError:
        return 'another input'
    try:
        with open(os.path.join(folder, RESULTS_JSON), encoding='utf-8') as handle:
            stored = json.load(handle)
    except (OSError, ValueError):
        return 'another input'
    return stored.get('source') if isinstance(stored, dict) else 'another input'


def results_folder(test_dir, label, source):
    """Where the results of ``source`` go: ``<test_dir>/<label>``, unless that folder holds
    the results of another input: then ``<label>_2``, ``<label>_3``, ... (a note says so).
    Results of different inputs with the same name (``trip1/photos``, ``trip2/photos``)
    never overwrite each other; a rerun of the same input writes into its own folder again.

    Args:
      test_dir: --test_dir.
      label: the folder name wanted (made valid UTF-8).
      source: the input file or folder (stored as ``source`` in results.json).

    Returns:
      The folder (not created).
    """
    label = _valid_name(label) or 'results'
    source = os.path.abspath(source)
    wanted = folder = os.path.join(test_dir, label)
    count = 1
    while _results_source(folder) not in (None, source):
        count += 1
        folder = os.path.join(test_dir, '%s_%d' % (label, count))
    if folder != wanted:
        print('note: %s holds the results of %s; the results of %s go to %s'
              % (wanted, _results_source(wanted), source, folder))
    return folder


def check_output_dir(out_dir, flag='--test_dir'):
    """UsageError now if ``out_dir`` could not be created or written later (creates nothing).

    The nearest existing ancestor must be a writable folder.

    Args:
      out_dir: the folder.
      flag: the flag it comes from, named in the message.
    """
    path = os.path.abspath(out_dir)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    if not os.path.isdir(path):
        raise UsageError('cannot create the folder %s (%s is not a folder); choose another %s'
                         % (out_dir, path, flag))
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError('cannot create the folder %s (%s is not writable); choose another %s'
                         % (out_dir, path, flag))


def make_output_dir(out_dir):
    """Create ``out_dir`` (and ``compare/``); UsageError naming it when that is impossible."""
    for folder in (out_dir, os.path.join(out_dir, 'compare')):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise UsageError('cannot create the output folder %s (%s); choose another '
                             '--test_dir' % (folder, exc.strerror or exc))
        if not os.access(folder, os.W_OK):
            raise UsageError('the output folder %s is not writable; choose another --test_dir'
                             % folder)


def _caption(label, values):
    if values is None or values.get('psnr') is None:
        return label
    ssim = values.get('ssim')
    return '%s  %.2f dB / %s' % (label, values['psnr'], '-' if ssim is None else '%.4f' % ssim)


def _write_compare(out_dir, name, rain, derained, clean, row):
    labels = [_caption('rainy', row['input'] if clean is not None else None),
              _caption('derained', row if clean is not None else None)]
    if clean is not None:
        labels.append('clean')
    path = os.path.join(out_dir, 'compare', name + '.jpg')
    gallery.write_compare(path, gallery.compare_strip(rain, derained, clean, labels))
    return path


# ----------------------------------------------------------------------------- deraining
def derain_pairs(derainer, pairs, out_dir, dataset, verbose=True, visuals=True, source=None):
    """Derain every pair, save outputs, measure both protocols per stage, write results.

    Nothing done is lost: if the run stops (an unreadable image, a full disk, Ctrl-C), the
    results of the images derained so far are written first (results.json/.csv, index.html)
    and a note saying where is added to the exception (``errors.report`` prints it).

    Args:
      derainer: Derainer.
      pairs: list of dataloader.Pair (clean_path may be None: metrics are then null).
      out_dir: folder for the derained PNGs, compare/ strips and the results files.
      dataset: label written in the results.
      verbose: print one line per image and the summary table.
      visuals: write ``compare/<name>.jpg`` and ``index.html``.
      source: the input file or folder, stored in results.json (``results_folder``).

    Returns:
      The results dict (as written to results.json): ``images`` (one entry per pair with
      the four metrics of the output, ``input`` (the rainy image's), ``stages`` (per stage,
      stage 1 first; the last equals the output's), ``seconds``, ``output``, ``compare``),
      ``mean`` (the same averaged), ``checkpoint``, ``dataset``, ``count``, ``source``.
      Output names are the pair names as valid UTF-8, unique in the run.
    """
    make_output_dir(out_dir)
    measure = Measurer()
    rows = []

    def results():
        return {'images': rows, 'mean': _means(rows), 'checkpoint': derainer.prefix,
                'dataset': dataset, 'count': len(rows),
                'source': None if source is None else os.path.abspath(source)}
    write_results(results(), out_dir)  # the folder is this source's from now on
    try:
        with Progress(len(pairs), 'derain', unit='img', enabled=verbose) as bar:
            for pair, name in zip(pairs, output_names(pairs)):
                rows.append(_derain_pair(derainer, pair, out_dir, name, measure, visuals))
                if verbose:
                    bar.write(_row_line(rows[-1], pair.clean_path is not None))
                bar.update(1)
    except BaseException as exc:  # an error or an interruption: keep what is done, re-raise
        _keep_done(exc, results(), out_dir, len(pairs), visuals)
        raise
    done = results()
    _write_all(done, out_dir, visuals)
    if verbose:
        print_summary(done, out_dir)
    return done


def _derain_pair(derainer, pair, out_dir, name, measure, visuals):
    """Derain one pair, write its PNG (and compare strip); returns its results row."""
    rain, clean = dataloader.load_pair(pair)
    start = time.perf_counter()
    derained, per_stage = derainer.derain(rain, stages=True)
    seconds = time.perf_counter() - start
    path = images.write_image(_safe_output_path(out_dir, name, pair), utils.to_uint8(derained))
    row = {'name': name, 'output': path, 'seconds': seconds}
    if clean is not None:
        # Paper protocol on the float output clipped to [0, 1] (SPEC); the Y protocol rounds
        # it to uint8 first, which is exactly the saved PNG.
        row.update(measure(derained, clean))
        row['input'] = measure(rain, clean)
        row['stages'] = [measure(s, clean) if s is not None else _none_metrics()
                         for s in per_stage[:-1]] + [{k: row[k] for k in METRIC_KEYS}]
    else:
        row.update(_none_metrics())
        row['input'] = _none_metrics()
        row['stages'] = [_none_metrics() for _ in per_stage]
    row['compare'] = (_write_compare(out_dir, name, rain, derained, clean, row)
                      if visuals else None)
    return row


def _write_all(results, out_dir, visuals):
    """results.json, results.csv and (with ``visuals``) index.html."""
    write_results(results, out_dir)
    if visuals:
        gallery.write_index(out_dir, results['images'], 'ReMAEN on %s' % results['dataset'])


def _keep_done(exc, results, out_dir, total, visuals):
    """Write the results of the images done before ``exc`` and add a note saying where."""
    done = results['count']
    if not done:
        return
    try:
        _write_all(results, out_dir, visuals)
    except Exception as error:  # noqa: BLE001 - the first fault is the one to report
        exc.add_note('the results of the %d image(s) already derained could not be written '
                     '(%s)' % (done, error))
        return
    exc.add_note('the %d of %d image(s) already derained are kept in %s (results.json, '
                 'results.csv%s)' % (done, total, out_dir, ', index.html' if visuals else ''))


def _row_line(row, has_gt):
    if not has_gt:
        return '%-14s derained in %.2f s -> %s' % (row['name'], row['seconds'], row['output'])
    return ('%-14s input %s dB / %s  ->  output %s dB / %s  (Y: %s dB / %s)  %.2f s'
            % (row['name'], _fmt(row['input']['psnr'], 2), _fmt(row['input']['ssim'], 4),
               _fmt(row['psnr'], 2), _fmt(row['ssim'], 4), _fmt(row['psnr_y'], 2),
               _fmt(row['ssim_y'], 4), row['seconds']))


def _means(rows):
    mean = {k: _mean([r[k] for r in rows]) for k in METRIC_KEYS}
    mean['seconds'] = _mean([r['seconds'] for r in rows])
    mean['input'] = {k: _mean([r['input'][k] for r in rows]) for k in METRIC_KEYS}
    stages = max((len(r['stages']) for r in rows), default=0)
    mean['stages'] = [{k: _mean([r['stages'][s][k] for r in rows if len(r['stages']) > s])
                       for k in METRIC_KEYS} for s in range(stages)]
    return mean


# A cell starting with one of these is run as a formula by spreadsheets (CSV injection).
_FORMULA_STARTS = ('=', '+', '-', '@', '\t', '\r')


def _csv_cell(value):
    """A CSV cell: '' for None; text a spreadsheet would run as a formula (a file named
    '=HYPERLINK(...).png') gets a leading apostrophe, so it is shown as text."""
    if value is None:
        return ''
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def write_results(results, out_dir):
    """results.json (schema in docs/evaluation.md) and results.csv (one row per image + mean).

    Both are written to a temporary file first and renamed (``images.atomic_write``), so a
    failed write never leaves a truncated file in place of a good one; the OSError (e.g. a
    full disk) is raised as it is. CSV cells that a spreadsheet would run as formulas are
    neutralised (``_csv_cell``).
    """
    images.atomic_write(os.path.join(out_dir, RESULTS_JSON),
                        lambda handle: json.dump(results, handle, indent=2))
    columns = ['name', 'output'] + list(METRIC_KEYS) + ['input_' + k for k in METRIC_KEYS] \
        + ['seconds']

    def write_csv(handle):
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in results['images'] + [dict(results['mean'], name='mean', output='')]:
            flat = dict(row, **{'input_' + k: row['input'][k] for k in METRIC_KEYS})
            writer.writerow([_csv_cell(flat[c]) for c in columns])
    images.atomic_write(os.path.join(out_dir, 'results.csv'), write_csv)


def print_summary(results, out_dir, stream=None):
    """The table of means (rainy input, each stage, output) in both protocols."""
    stream = stream or sys.stdout
    mean, inp = results['mean'], results['mean']['input']
    out = lambda text: print(text, file=stream)  # noqa: E731
    if mean['psnr'] is None:
        out('%d image(s) derained; no ground truth, so PSNR/SSIM are not available.'
            % results['count'])
    else:
        line = '+--------------------+----------+--------+----------+--------+'
        out(line)
        out('| %-18s | %8s | %6s | %8s | %6s |' % ('%d images' % results['count'], 'PSNR',
                                                    'SSIM', 'PSNR-Y', 'SSIM-Y'))
        out(line)
        labelled = [('rainy input', inp)]
        stages = mean.get('stages') or []
        labelled += [('stage %d' % (s + 1), v) for s, v in enumerate(stages[:-1])]
        labelled.append(('ReMAEN output', mean))
        for label, values in labelled:
            out('| %-18s | %8s | %6s | %8s | %6s |' % (
                label, _fmt(values['psnr'], 2), _fmt(values['ssim'], 4),
                _fmt(values['psnr_y'], 2), _fmt(values['ssim_y'], 4)))
        out(line)
        out('PSNR/SSIM: paper protocol (BGR channels, range 1, Gaussian SSIM, VALID); '
            'PSNR-Y/SSIM-Y: BT.601 luma of uint8 images (PReNet/Restormer protocol).')
    out('Average time per image: %.3f s over %d images (the first includes warm-up).'
        % (mean['seconds'], results['count']))
    out('Derained images, results.csv/results.json and index.html: %s' % out_dir)
