"""Evaluation during training: the per-stage curve (``curve.csv``) and the sample strips.

With ``--eval_every N`` the test set is derained every N iterations and every stage's output
is measured in both protocols: rows ``step,stage,psnr,ssim,psnr_y,ssim_y,seconds`` are
appended to ``<logs_dir>/<checkpoint folder name>/curve.csv`` (the paper's "recurrent rain
removal analysis"; ``python figures.py curves`` draws it) and written as TensorBoard scalars.
Every ``--sample_every`` iterations, rain | derained | clean | residual strips of two test
pairs go to ``<sample_dir>/<checkpoint folder name>/``. ``training.loop`` calls both.
"""
import csv
import os
import time

import numpy as np

import dataloader
import metrics
import utils
from console import quiet
from inference import Measurer
from loading import images

CURVE_FILE = 'curve.csv'
CURVE_COLUMNS = ('step', 'stage', 'psnr', 'ssim', 'psnr_y', 'ssim_y', 'seconds')


def scalar_summary(values):
    """A tf.Summary of scalars computed outside the graph: ``{tag: float}``, in that order."""
    tf = quiet.import_tf()
    return tf.Summary(value=[tf.Summary.Value(tag=tag, simple_value=value)
                             for tag, value in values.items()])


# ----------------------------------------------------------------------------- the curve
def read_curve(path):
    """The rows of a curve.csv as dicts of numbers (empty list when absent)."""
    if not os.path.isfile(path):
        return []
    with open(path, newline='') as handle:
        return [{k: (int(v) if k in ('step', 'stage') else float(v)) if v != '' else None
                 for k, v in row.items()} for row in csv.DictReader(handle)]


def truncate_curve(path, step):
    """Drop the rows of a curve.csv after ``step`` (a rolled-back run's evaluations).

    Written to a temporary file and renamed, so an interruption leaves the old file. Returns
    the number of rows dropped."""
    if not os.path.isfile(path):
        return 0
    with open(path, newline='') as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return 0
    kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= step]
    dropped = len(rows) - len(kept)
    if dropped:
        tmp = path + '.tmp'
        with open(tmp, 'w', newline='') as handle:
            csv.writer(handle).writerows(kept)
        os.replace(tmp, path)
    return dropped


def evaluate_stages(session, infer, pairs):
    """Derain ``pairs`` and average every stage's metrics over them.

    Args:
      session: session holding the weights of ``infer``'s variables.
      infer: model.InferenceGraph.
      pairs: dataloader.Pair list with ground truth.

    Returns:
      (list of dicts, one per stage (stage 1 first) with psnr, ssim, psnr_y, ssim_y means;
      seconds spent).
    """
    measure = Measurer()
    start = time.perf_counter()
    per_stage = None
    for pair in pairs:
        rain, clean = dataloader.load_pair(pair)
        outputs = session.run(infer.stage_outputs, {infer.images: rain[np.newaxis]})
        values = [measure(out[0], clean) for out in outputs]
        per_stage = per_stage or [[] for _ in values]
        for stage, value in enumerate(values):
            per_stage[stage].append(value)
    means = [{k: _mean([v[k] for v in values]) for k in CURVE_COLUMNS[2:6]}
             for values in per_stage or []]
    return means, time.perf_counter() - start


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def append_curve(path, step, means, seconds):
    """Append one evaluation (a row per stage) to curve.csv, header first if new."""
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    new = not os.path.isfile(path)
    with open(path, 'a', newline='') as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(CURVE_COLUMNS)
        for stage, values in enumerate(means, 1):
            writer.writerow([step, stage] + ['' if values[k] is None else '%.6f' % values[k]
                                             for k in CURVE_COLUMNS[2:6]] + ['%.2f' % seconds])


def run_evaluation(args, run, graph, session, writer, step, first):
    """Measure the curve point of ``step``; print it (and its cost the first time)."""
    means, seconds = evaluate_stages(session, graph.infer, run.eval_pairs)
    append_curve(os.path.join(run.log_dir, CURVE_FILE), step, means, seconds)
    if writer is not None:
        writer.add_summary(scalar_summary({
            'eval/stage%d/%s' % (stage, key): float('nan') if values[key] is None else values[key]
            for stage, values in enumerate(means, 1) for key in CURVE_COLUMNS[2:6]}), step)
    stages = '  '.join('stage %d %.2f dB / %.4f' % (s, v['psnr'], v['ssim'] or float('nan'))
                       for s, v in enumerate(means, 1))
    text = 'eval @ %d on %d image(s): %s' % (step, len(run.eval_pairs), stages)
    if first:
        text += ('  [one evaluation takes %.1f s; every %d iterations]'
                 % (seconds, args.eval_every))
    return text


# ----------------------------------------------------------------------------- samples
def _sample_strip(rain, derained, clean, residual):
    """rain | derained | clean | residual side by side (uint8, BGR)."""
    residual = np.abs(residual)
    residual = residual / max(float(residual.max()), 1e-6)
    return np.concatenate([utils.to_uint8(x) for x in (rain, derained, clean, residual)], axis=1)


def write_samples(session, infer, pairs, folder, step):
    """rain | derained | clean | residual strips of the sample pairs at ``step``."""
    os.makedirs(folder, exist_ok=True)
    for pair in pairs:
        rain, clean = dataloader.load_pair(pair)
        out = session.run(infer.output, {infer.images: rain[np.newaxis]})[0]
        images.write_image(os.path.join(folder, '%s_iter%06d.png' % (pair.name, step)),
                           _sample_strip(rain, out, clean, rain - out))


def batch_ssim_summary(output, clean):
    """The ``metrics/ssim`` summary of a training batch, computed in float64 by ``metrics.ssim``.

    Args:
      output: float array (B, H, W, 3), the network output clipped to [0, 1].
      clean: float array (B, H, W, 3) in [0, 1], the clean crops.

    Returns:
      tf.Summary with one value: the mean SSIM over the batch (paper protocol); None when the
      crops are smaller than SSIM's 11x11 window.
    """
    if min(np.shape(output)[1:3]) < metrics.SSIM_WIN_SIZE:
        return None
    value = float(np.mean([metrics.ssim(o, c) for o, c in zip(output, clean)]))  # float64
    return scalar_summary({'metrics/ssim': value})
