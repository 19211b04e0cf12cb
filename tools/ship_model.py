"""Ship a trained model: export its weights, measure it on its demo set, write its card.

    python tools/ship_model.py light checkpoints/ReMAEN_Rain100L_32 --demo Demo \
        --training_data "RainTrainL (200 pairs); the paper's recipe" --wall_hours 5.9 \
        --photo data/real/1.jpg

Writes ``checkpoints/ReMAEN_<name>/``: the weights only (``--export_weights``), its
``remaen_settings.json`` and ``model_card.json`` (training facts and the demo-set means in
both protocols, measured here by ``inference.derain_pairs``; tests/test_demo.py checks that
the shipped files reproduce them), and with ``--photo`` a small before/after JPEG strip in
``docs/figures/<name>_<photo>.jpg`` for the README.
"""
import argparse
import datetime
import json
import os
import sys

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import checkpoints  # noqa: E402
import dataloader  # noqa: E402
import inference  # noqa: E402
import main as cli  # noqa: E402
import profiling  # noqa: E402
import quiet  # noqa: E402
import utils  # noqa: E402


def build_parser():
    parser = argparse.ArgumentParser(prog='tools/ship_model.py', description=__doc__.split(
        '\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('name', choices=['light', 'heavy'], help='shipped model name')
    parser.add_argument('checkpoint', help='training checkpoint folder or prefix')
    parser.add_argument('--demo', required=True,
                        help='demo set under data/test (Demo or DemoHeavy)')
    parser.add_argument('--training_data', required=True, help='text for the card')
    parser.add_argument('--wall_hours', type=float, required=True,
                        help='total training wall time in hours (from the run log)')
    parser.add_argument('--initialised_from', default=None,
                        help='text: what the weights started from, if not random')
    parser.add_argument('--photo', default=None, help='a real photo for the before/after strip')
    parser.add_argument('--photo_width', type=int, default=480,
                        help='width of each panel of the strip (default 480)')
    return parser


def _cpu():
    """'<CPU model>, <N> cores' of this machine."""
    return '%s, %d cores' % profiling.machine_description()


def photo_strip(derainer, photo, name, width):
    """rainy | derained of one photo, each panel ``width`` pixels wide, as a JPEG."""
    image = dataloader.read_image(photo)
    height = int(round(image.shape[0] * width / image.shape[1]))
    out = derainer(image)
    panels = [cv2.resize(utils.to_uint8(x), (width, height), interpolation=cv2.INTER_AREA)
              for x in (image, out)]
    strip = np.concatenate([panels[0], np.full((height, 4, 3), 255, np.uint8), panels[1]], 1)
    folder = os.path.join(ROOT, 'docs', 'figures')
    os.makedirs(folder, exist_ok=True)
    stem = os.path.splitext(os.path.basename(photo))[0]
    path = os.path.join(folder, '%s_%s.jpg' % (name, stem))
    cv2.imwrite(path, strip, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return path


def main(argv=None):
    args = build_parser().parse_args(argv)
    quiet.setup()
    quiet.import_tf()
    target = checkpoints.shipped_model_folder(args.name)
    prefix = checkpoints.find(args.checkpoint)
    if prefix is None:
        print('error: no checkpoint at %s' % args.checkpoint, file=sys.stderr)
        return 2
    code = cli.main(['--export_weights', target, '--checkpoint', prefix])
    if code:
        return code
    stored = checkpoints.load_settings(target) or {}
    step = checkpoints.stored_step(prefix)
    pairs, _ = dataloader.find_pairs(os.path.join(ROOT, 'data', 'test', args.demo),
                                     verbose=False)
    derainer = inference.Derainer(checkpoints.find(target), checkpoints.stored_config(target))
    try:
        results = inference.derain_pairs(derainer, pairs, os.path.join(
            ROOT, 'results', 'ship_' + args.name), args.demo)
        strip = (photo_strip(derainer, args.photo, args.name, args.photo_width)
                 if args.photo else None)
    finally:
        derainer.close()
    mean = results['mean']
    card = {
        'name': args.name, 'variables': 138, 'source': os.path.relpath(prefix, ROOT),
        'iterations': step, 'batch_size': stored.get('batch_size'),
        'patch_size': stored.get('patch_size'), 'training_data': args.training_data,
        'initialised_from': args.initialised_from, 'wall_hours': args.wall_hours,
        'cpu': _cpu(), 'date': datetime.date.today().isoformat(),
        'demo_set': args.demo, 'demo': {k: mean[k] for k in inference.METRIC_KEYS},
        'photo_strip': os.path.relpath(strip, ROOT) if strip else None,
    }
    card['demo']['input'] = mean['input']
    card['demo']['stages'] = mean['stages']
    with open(os.path.join(target, 'model_card.json'), 'w') as handle:
        json.dump(card, handle, indent=2)
    print('Shipped %s: %d iterations, demo %.2f dB / %.4f (input %.2f dB)'
          % (args.name, step, mean['psnr'], mean['ssim'], mean['input']['psnr']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
