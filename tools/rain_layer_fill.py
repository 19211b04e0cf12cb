"""What a clipped pixel of a rain layer should become on a darker background: the fill modes
of ``rainlayers.fill_clipped`` measured on real layers (numpy only, no training).

    python tools/rain_layer_fill.py --layers ../shared/data/RainTrainH-12 \\
        --real ../shared/data/Rain100H-val

1. Ground truth by re-censoring: the exact (unclipped) pixels of each layer are laid on a
   brighter background (another layer pair's clean image), which clips some of them again;
   each mode fills them back from that re-censored pair, and the result laid on a real
   background (a ``--real`` clean image) is compared with the truth laid on it.
2. Statistics against real pairs: the layers laid on the ``--real`` clean images (random
   windows, flips as in training) against the ``--real`` pairs themselves: mean residual
   (rainy - clean) and fraction clipped, per background brightness.
"""
import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from loading import images  # noqa: E402
from loading import rainlayers  # noqa: E402
from loading.discovery import find_pairs  # noqa: E402

BINS = np.linspace(0.0, 1.0, 11)


def _window(image, side, rng, flip=False):
    """A random side x side window (mirrored with probability 1/2 when ``flip``)."""
    draws = rng.random(3)
    return rainlayers._window(image, side, side, draws, flip)


def recensor(layers, real, side, repeats, rng):
    """Part 1: {mode: (mean error, RMSE) on re-clipped samples, PSNR of the composite}."""
    errors = {m: [] for m in rainlayers.FILL_MODES}
    squared = {m: [] for m in rainlayers.FILL_MODES}
    for index, (rain, clean) in enumerate(layers):
        layer, clipped = rainlayers.rain_layer(rain, clean)
        exact = ~clipped.any(axis=-1)
        for repeat in range(repeats):
            bright = layers[(index + 1 + repeat) % len(layers)][1]
            truth = _window(np.where(exact[..., None], layer, 0.0), side, np.random.default_rng(
                [index, repeat]))
            valid = _window(exact, side, np.random.default_rng([index, repeat]))
            back = _window(bright, side, rng)
            rainy = rainlayers.composite(back, truth)
            again, clipped2 = rainlayers.rain_layer(rainy, back)
            target = _window(real[rng.integers(len(real))][1], side, rng)
            wanted = rainlayers.composite(target, truth)
            lost = clipped2.any(axis=-1) & valid
            values, censored = rainlayers.grey_layer(again, clipped2, back)
            means = rainlayers.censored_means(values, censored)
            for mode in rainlayers.FILL_MODES:
                filled = rainlayers.fill_clipped(again, clipped2, back, means, mode)
                got = rainlayers.composite(target, filled)
                errors[mode].append((filled - truth)[lost].ravel())
                squared[mode].append(((got - wanted)[valid] ** 2).ravel())
    return {m: (float(np.mean(np.concatenate(errors[m]))),
                float(np.sqrt(np.mean(np.concatenate(errors[m]) ** 2))),
                float(10 * np.log10(1.0 / np.mean(np.concatenate(squared[m])))))
            for m in rainlayers.FILL_MODES}


def profile(cleans, rainies):
    """(mean residual, fraction clipped) overall and per brightness bin of the background."""
    clean = np.concatenate([c.ravel() for c in cleans])
    rainy = np.concatenate([r.ravel() for r in rainies])
    residual, clipped = rainy - clean, rainy >= 1.0
    rows = []
    for low, high in zip(BINS[:-1], BINS[1:]):
        inside = (clean >= low) & (clean < high)
        rows.append((float(residual[inside].mean()), float(clipped[inside].mean())))
    return (float(residual.mean()), float(clipped.mean())), rows


def composites(layer_set, real, side, copies, seed):
    """Part 2: each real clean image with ``copies`` layer windows laid on it, per mode."""
    result = {}
    for mode in rainlayers.FILL_MODES:
        layer_set.mode = mode
        cleans, rainies = [], []
        for number, (_, clean) in enumerate(real):
            for copy in range(copies):
                rng = np.random.default_rng([seed, number, copy])
                rainy, window = rainlayers.sample_pair(clean, layer_set, rng, side)
                cleans.append(window)
                rainies.append(rainy)
        result[mode] = profile(cleans, rainies)
    layer_set.mode = 'mean'
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--layers', required=True, help='folder of layer pairs')
    parser.add_argument('--real', required=True, help='folder of real pairs to compare with')
    parser.add_argument('--side', type=int, default=320, help='window side (default 320)')
    parser.add_argument('--repeats', type=int, default=4, help='part 1 runs per layer')
    parser.add_argument('--copies', type=int, default=3, help='part 2 layers per background')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    layer_set = rainlayers.load_layers(args.layers)
    layers = [images.load_pair(layer.pair) for layer in layer_set.layers]
    real = [images.load_pair(p) for p in find_pairs(args.real, verbose=False)[0]]
    rng = np.random.default_rng(args.seed)
    print('| fill | error of the filled S on re-clipped samples (mean, RMSE) | composite '
          'PSNR against the truth |\n|---|---|---|')
    for mode, (mean, rmse, psnr) in recensor(layers, real, args.side, args.repeats,
                                             rng).items():
        print('| %s | %+.3f, %.3f | %.2f dB |' % (mode, mean, rmse, psnr))
    stats = composites(layer_set, real, args.side, args.copies, args.seed)
    real_stats = profile([c for _, c in real], [r for r, _ in real])
    columns = [('real pairs', real_stats)] + [(m, stats[m]) for m in rainlayers.FILL_MODES]
    print('\n| background brightness | ' + ' | '.join('%s: residual, clipped' % name
                                                     for name, _ in columns) + ' |')
    print('|---' * (len(columns) + 1) + '|')
    print('| all | ' + ' | '.join('%.3f, %.3f' % s[0] for _, s in columns) + ' |')
    for row, (low, high) in enumerate(zip(BINS[:-1], BINS[1:])):
        print('| %.1f-%.1f | ' % (low, high)
              + ' | '.join('%.3f, %.3f' % s[1][row] for _, s in columns) + ' |')


if __name__ == '__main__':
    main()
