"""Ship a trained model: export its weights, measure it on its demo set, write its card.

    python tools/ship_model.py light checkpoints/ReMAEN_Rain100L_32 --demo Demo \
        --training_data "RainTrainL (200 pairs); the paper's recipe" --wall_hours 5.9 \
        --photo data/real/1.jpg

Several checkpoints of one run (e.g. ``snap/ReMAEN-4100 ... snap/ReMAEN-5000``) ship the mean
of their weights (``checkpointing.mean_weights``); the card lists them and its ``source`` and
``iterations`` are the newest one's.

Writes ``checkpoints/ReMAEN_<name>/``: the weights only (``--export_weights``), its
``remaen_settings.json`` and ``model_card.json`` (training facts and the demo-set means in
both protocols, measured here by ``inference.derain_pairs``; tests/test_demo.py checks that
the shipped files reproduce them), and with ``--photo`` a small before/after JPEG strip in
``docs/figures/<name>_<photo>.jpg`` for the README. All of it is made in
``checkpoints/ReMAEN_<name>.new`` after every input was checked, and replaces the shipped model
only when complete: a fault leaves the shipped model (weights and card) as it was.
"""
import argparse
import datetime
import json
import os
import shutil
import sys

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import checkpointing  # noqa: E402
import dataloader  # noqa: E402
from console import errors  # noqa: E402
import inference  # noqa: E402
import commands  # noqa: E402
import settings  # noqa: E402
from machine import resources  # noqa: E402
from console import quiet  # noqa: E402
import utils  # noqa: E402


def build_parser():
    parser = argparse.ArgumentParser(prog='tools/ship_model.py', description=__doc__.split(
        '\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('name', choices=['light', 'heavy'], help='shipped model name')
    parser.add_argument('checkpoint', nargs='+',
                        help='training checkpoint folder or prefix; several: their weights '
                             'are averaged (checkpoints of one run, e.g. its last ten)')
    parser.add_argument('--source_folder', default=None,
                        help='the training folder the checkpoints come from, for the card, when '
                             'they were copied aside (e.g. before --keep_checkpoints rotated '
                             'them out); default: where they are')
    parser.add_argument('--demo', required=True,
                        help='demo set under data/test (Demo or DemoHeavy)')
    parser.add_argument('--training_data', required=True, help='text for the card')
    parser.add_argument('--wall_hours', type=float, required=True,
                        help='total training wall time in hours (from the run log)')
    parser.add_argument('--cpu', default=None,
                        help="text: the CPU(s) it was trained on, when not (only) this "
                             "machine's, e.g. 'AMD EPYC and Intel Xeon, 2 cores' (default: "
                             "this machine's model and cores)")
    parser.add_argument('--schedule', default=None,
                        help="text: the learning-rate schedule the weights were trained with "
                             "(default: from the run's remaen_settings.json, e.g. 'lr 1e-3 to "
                             "9,534, 1e-4 after (paper: to 30,000)')")
    parser.add_argument('--initialised_from', default=None,
                        help='text: what the weights started from, if not random')
    parser.add_argument('--photo', default=None, help='a real photo for the before/after strip')
    parser.add_argument('--photo_width', type=int, default=480,
                        help='width of each panel of the strip (default 480)')
    return parser


def _cpu():
    """'<CPU model>, <N> cores' of this machine."""
    return '%s, %d cores' % resources.machine_description()


def photo_strip(derainer, photo, width):
    """rainy | derained of one photo, each panel ``width`` pixels wide: uint8 [h, 2w+4, 3]."""
    image = dataloader.read_image(photo)
    height = int(round(image.shape[0] * width / image.shape[1]))
    out = derainer(image)
    panels = [cv2.resize(utils.to_uint8(x), (width, height), interpolation=cv2.INTER_AREA)
              for x in (image, out)]
    return np.concatenate([panels[0], np.full((height, 4, 3), 255, np.uint8), panels[1]], 1)


def strip_path(photo, name):
    """Where the strip of ``photo`` goes: ``docs/figures/<name>_<photo stem>.jpg``."""
    stem = os.path.splitext(os.path.basename(photo))[0]
    return os.path.join(ROOT, 'docs', 'figures', '%s_%s.jpg' % (name, stem))


def write_strip(strip, photo, name):
    """Save a photo strip at ``strip_path``; returns the path."""
    path = strip_path(photo, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(path, strip, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return path


def replace_folder(new, target):
    """Put the folder ``new`` in place of ``target`` (two renames: the old model stays whole
    until the new one is complete; ``target``.old holds it between the renames)."""
    old = target + '.old'
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(target):
        os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)


def _source(prefix, folder=None):
    """How the card names a checkpoint: relative to the project, in ``folder`` if given."""
    if folder is not None:
        prefix = os.path.join(folder, os.path.basename(prefix))
    return os.path.relpath(os.path.abspath(prefix), ROOT)


def average(prefixes, target, names):
    """Export the mean of the weights of ``prefixes`` (one run's checkpoints) to ``target``;
    its settings list them as ``names``."""
    _, count, size = checkpointing.export_mean_weights(prefixes, target, names)
    print('Exported the mean of %d checkpoints (%d variables) to %s (%.1f MB)'
          % (len(prefixes), count, target, size / 1e6))


def ship(args):
    """Check every input, then export, measure and write the card in ``<target>.new`` and put
    it in place of the shipped model only when all of it succeeded: a fault (a missing demo
    set, an unreadable photo, a full disk) leaves the shipped model as it was."""
    target = checkpointing.shipped_model_folder(args.name)
    prefixes = []
    for where in args.checkpoint:
        prefix = checkpointing.find(where)
        if prefix is None:
            raise errors.UsageError('no checkpoint at %s: give a training checkpoint folder or '
                                    'prefix' % where)
        prefixes.append(prefix)
    pairs, _ = dataloader.find_pairs(os.path.join(ROOT, 'data', 'test', args.demo),
                                     verbose=False)
    if args.photo and not os.path.isfile(args.photo):
        raise errors.UsageError('--photo %s is not a file: give a rainy photo for the strip, '
                                'or leave --photo out' % args.photo)
    if args.photo:
        dataloader.read_image(args.photo)             # readable, before anything is written
    steps = [checkpointing.stored_step(prefix) or 0 for prefix in prefixes]
    prefix = prefixes[steps.index(max(steps))]                  # the newest one
    names = [_source(p, args.source_folder) for p in prefixes]
    staging = target + '.new'
    shutil.rmtree(staging, ignore_errors=True)
    try:
        if len(prefixes) == 1:
            commands.run_commands(settings.parse_args(
                ['--export_weights', staging, '--checkpoint', prefix]))
        else:
            average(prefixes, staging, names)
        card, strip = measure(args, staging, pairs, prefix, names)
        with open(os.path.join(staging, checkpointing.CARD_FILE), 'w') as handle:
            json.dump(card, handle, indent=2)
        replace_folder(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if strip is not None:
        write_strip(strip, args.photo, args.name)
    print('Shipped %s to %s: %s iterations, demo %.2f dB / %.4f (input %.2f dB)'
          % (args.name, os.path.relpath(target, ROOT), card['iterations'] or 'unknown',
             card['demo']['psnr'], card['demo']['ssim'], card['demo']['input']['psnr']))
    return 0


def measure(args, folder, pairs, prefix, names):
    """The card of the model exported to ``folder`` (its demo-set means measured here) and
    the photo strip (None without ``--photo``)."""
    stored = checkpointing.load_settings(folder) or {}
    derainer = inference.Derainer(checkpointing.find(folder), checkpointing.stored_config(folder))
    try:
        results = inference.derain_pairs(derainer, pairs, os.path.join(
            ROOT, 'results', 'ship_' + args.name), args.demo)
        strip = photo_strip(derainer, args.photo, args.photo_width) if args.photo else None
    finally:
        derainer.close()
    mean = results['mean']
    card = {
        'name': args.name, 'variables': 138, 'source': _source(prefix, args.source_folder),
        'averaged_checkpoints': names if len(names) > 1 else None,
        'iterations': checkpointing.stored_step(prefix), 'batch_size': stored.get('batch_size'),
        'patch_size': stored.get('patch_size'), 'training_data': args.training_data,
        'schedule': args.schedule or checkpointing.schedule_text(
            stored.get('lr', 1e-3), stored.get('lr_decay_step', 30000),
            checkpointing.stored_step(prefix)),
        'initialised_from': args.initialised_from, 'wall_hours': args.wall_hours,
        'cpu': args.cpu or _cpu(), 'date': datetime.date.today().isoformat(),
        'demo_set': args.demo, 'demo': {k: mean[k] for k in inference.METRIC_KEYS},
        'photo_strip': (os.path.relpath(strip_path(args.photo, args.name), ROOT)
                        if args.photo else None),
    }
    card['demo']['input'] = mean['input']
    card['demo']['stages'] = mean['stages']
    return card, strip


def main(argv=None):
    """Parse, ship; returns the exit code (faults: one ``error:`` line, nothing replaced)."""
    args = build_parser().parse_args(argv)
    quiet.setup()
    quiet.import_tf()
    return errors.run(lambda: ship(args))


if __name__ == '__main__':
    sys.exit(main())
