"""Synthetic rain: make (rainy, clean) training pairs from clean photos.

Writes pairs in the layout of the ReMAEN authors' data, ``rain-N.png`` and
``norain-N.png`` side by side in one folder, so that users can train on their
own clean photographs::

    python synthesize.py --clean_dir photos/ --out_dir pairs/ --preset light \
        --copies 2 --seed 0

Streak model (pure numpy/cv2; the usual "noise + motion blur" recipe):

1. Drops. For each layer, drop centres are scattered uniformly over the image
   (a Bernoulli field with ``density`` = probability that a pixel holds a
   drop; the count is drawn from the binomial distribution), each with an
   amplitude drawn from U(0.5, 1). Drops are scattered over a canvas padded by
   half the kernel size so that streaks also enter from outside the frame.
2. Motion blur. The drops are convolved with a line kernel of ``length``
   pixels, drawn anti-aliased with sub-pixel end points by ``cv2.line`` on a
   k x k canvas at angle ``angle_deg`` (convention below).
3. Width. The kernel is widened by a Gaussian blur with sigma ``width``
   pixels (0 keeps the one-pixel line), then scaled to a peak of 1, so an
   isolated drop of amplitude a becomes a streak of peak a whatever its length
   and width.
4. Brightness. The layer is clipped to [0, 1] and scaled by ``brightness``.
5. Blending. Layers are combined with the image by screen blending,
   ``I <- 1 - (1 - I) * (1 - S)`` (white streaks, no overflow).
6. Veil (``heavy`` only). Rain accumulation / haze as in the atmospheric
   scattering model used for Rain100H (Yang et al., CVPR 2017):
   ``I <- I * (1 - a) + a * A`` with veil strength ``a`` and a grey
   atmospheric light ``A``.

Angle convention: degrees from vertical, positive = clockwise as the image is
displayed (x to the right, y down), i.e. the streak leans right: its upper end
is to the right of its lower end ("/" for +30, "\\" for -30, "|" for 0).
Angles are orientations, so they live in (-90, 90]. Each copy draws a base
angle uniformly in [-angle_range, angle_range] unless an angle is given; each
layer then jitters around the base by up to +-angle_jitter degrees (also when
an angle is given, so that layers are never exactly parallel).

Presets (``PRESETS``): each numeric pair (lo, hi) is a uniform range drawn
once per layer (or per copy for the veil). Measured as mean Y-channel PSNR
(BT.601, uint8) against the clean image on the 45 clean images of
``Rain100L-train``: ``light`` (thin sparse streaks) gives 27.0 dB, like the
real Rain100L inputs (27.4 dB on those images, 26.9 dB on all 100);
``heavy`` (dense, long, wide, bright streaks and a veil) gives 13.9 dB, like
Rain100H (13.9 dB on the five heavy-rain samples).

Determinism: every random number comes from one ``numpy.random.Generator``;
``synthesize_folder`` uses ``np.random.default_rng([seed, N])`` for pair N, so
a pair depends only on the seed, the preset, the angle and its clean image.

Real rain instead of streaks (``--rain_layers PAIRED_FOLDER``, ``composite_folder``): each
pair is a window of a background with the rain of a random window of a random layer of the
folder laid on it, as training with ``main.py --rain_layers`` makes its crops
(``rainlayers``); written to look at the data and to audit it (``audit.py``).
"""

import argparse
import os
import sys

import cv2
import numpy as np
from console.progress import Progress

from loading import images
from loading import rainlayers
from loading.discovery import IMAGE_EXTENSIONS, DataError, find_pairs, image_names
from settings import nonnegative_int, positive_int

PRESETS = {
    # Rain100L-like: two layers of thin, sparse, semi-transparent streaks.
    'light': {
        'layers': 2,                 # number of streak layers
        'density': (0.0005, 0.001),  # fraction of pixels that hold a drop, per layer
        'length': (20.0, 40.0),      # streak length in pixels
        'width': (0.0, 0.4),         # Gaussian sigma widening the streak, pixels
        'brightness': (0.4, 0.7),    # peak streak intensity in [0, 1]
        'angle_range': 25.0,         # base angle drawn in [-range, range] degrees
        'angle_jitter': 5.0,         # per-layer deviation from the base angle, degrees
        'veil': (0.0, 0.0),          # veil strength a
        'veil_light': (0.8, 0.9),    # atmospheric light A (grey)
    },
    # Rain100H-like: more, denser, longer, wider and brighter streaks plus a veil.
    'heavy': {
        'layers': 3,
        'density': (0.001, 0.002),
        'length': (40.0, 80.0),
        'width': (0.6, 1.2),
        'brightness': (0.5, 0.85),
        'angle_range': 25.0,
        'angle_jitter': 5.0,
        'veil': (0.1, 0.2),
        'veil_light': (0.8, 0.9),
    },
}

class SynthesisError(ValueError):
    """Bad input for ``synthesize_folder``; the message names the offending path."""


def line_kernel(length, angle_deg, width=0.0):
    """Motion-blur kernel: a line of ``length`` pixels at ``angle_deg``.

    Args:
        length: streak length in pixels, >= 1.
        angle_deg: degrees from vertical, positive = upper end to the right.
        width: sigma in pixels of the Gaussian blur that widens the line; 0 for none.
    Returns:
        k x k float32 kernel (k odd) with peak value 1.
    """
    if length < 1:
        raise ValueError(f'length must be >= 1, got {length}')
    if width < 0:
        raise ValueError(f'width must be >= 0, got {width}')
    pad = int(np.ceil(3 * width)) + 1
    k = int(np.ceil(length)) + 2 * pad
    k += 1 - k % 2
    c = (k - 1) / 2.0
    theta = np.deg2rad(angle_deg)
    half = (length - 1) / 2.0
    # Unit vector pointing "up" the streak in image coordinates (y down).
    dx, dy = np.sin(theta), -np.cos(theta)
    shift = 4  # sub-pixel end points: coordinates in 1/16 pixel
    p1 = (int(round((c + half * dx) * 16)), int(round((c + half * dy) * 16)))
    p2 = (int(round((c - half * dx) * 16)), int(round((c - half * dy) * 16)))
    canvas = np.zeros((k, k), np.uint8)
    cv2.line(canvas, p1, p2, 255, 1, cv2.LINE_AA, shift)
    kernel = canvas.astype(np.float32)
    if width > 0:
        kernel = cv2.GaussianBlur(kernel, (0, 0), sigmaX=width, sigmaY=width,
                                  borderType=cv2.BORDER_CONSTANT)
    peak = kernel.max()
    if peak <= 0:  # cannot happen for length >= 1, kept as a guard
        kernel[k // 2, k // 2] = peak = 1.0
    return kernel / peak


def streak_layer(shape_hw, density, length, angle_deg, width, brightness, rng):
    """One layer of rain streaks.

    Args:
        shape_hw: (H, W) of the layer.
        density: probability in [0, 1] that a pixel holds a drop.
        length: streak length in pixels (>= 1).
        angle_deg: streak orientation, degrees from vertical, positive = leaning right.
        width: Gaussian sigma in pixels widening the streaks (0 = one-pixel lines).
        brightness: peak intensity in [0, 1].
        rng: numpy.random.Generator, the only source of randomness.
    Returns:
        H x W float32 streak intensity in [0, brightness] subset of [0, 1].
    """
    h, w = (int(v) for v in shape_hw[:2])
    if h < 1 or w < 1:
        raise ValueError(f'shape_hw must be positive, got {shape_hw}')
    if not 0.0 <= density <= 1.0:
        raise ValueError(f'density must be in [0, 1], got {density}')
    if not 0.0 <= brightness <= 1.0:
        raise ValueError(f'brightness must be in [0, 1], got {brightness}')
    kernel = line_kernel(length, angle_deg, width)
    r = kernel.shape[0] // 2
    ph, pw = h + 2 * r, w + 2 * r
    count = rng.binomial(ph * pw, density)
    flat = rng.choice(ph * pw, size=count, replace=False) if count else np.zeros(0, int)
    drops = np.zeros(ph * pw, np.float32)
    drops[flat] = rng.uniform(0.5, 1.0, size=count)
    drops = drops.reshape(ph, pw)
    # filter2D correlates; the kernel is point-symmetric, so this is a convolution.
    blurred = cv2.filter2D(drops, -1, kernel, borderType=cv2.BORDER_CONSTANT)
    layer = np.clip(blurred[r:r + h, r:r + w], 0.0, 1.0) * np.float32(brightness)
    return layer.astype(np.float32)


def _to_float_image(clean):
    """uint8 (0..255) or float (0..1) image, HxW or HxWxC -> float32 in [0, 1]."""
    clean = np.asarray(clean)
    if clean.ndim not in (2, 3) or clean.shape[0] < 1 or clean.shape[1] < 1:
        raise ValueError(f'clean must be HxW or HxWxC, got shape {clean.shape}')
    if clean.dtype == np.uint8:
        return clean.astype(np.float32) / 255.0
    if not np.issubdtype(clean.dtype, np.floating):
        raise ValueError(f'clean must be uint8 or float in [0, 1], got {clean.dtype}')
    if clean.size and (np.nanmin(clean) < 0.0 or np.nanmax(clean) > 1.0 or np.isnan(clean).any()):
        raise ValueError('float clean image must have values in [0, 1]')
    return clean.astype(np.float32)


def _uniform(rng, bounds):
    lo, hi = bounds
    return float(rng.uniform(lo, hi)) if hi > lo else float(lo)


def _wrap_angle(angle):
    """Orientation in degrees mapped to (-90, 90]."""
    a = (angle + 90.0) % 180.0 - 90.0
    return 90.0 if a == -90.0 else a


def add_rain(clean, preset='light', angle_deg=None, rng=None, seed=None):
    """Add synthetic rain to one clean image.

    Args:
        clean: H x W x C (any channel order; streaks are white) or H x W image,
            uint8 in 0..255 or float in [0, 1].
        preset: key of ``PRESETS`` or a dict with the same keys.
        angle_deg: base streak angle (degrees from vertical, positive = leaning
            right); None draws it from the preset's ``angle_range``.
        rng: numpy.random.Generator; if None one is made from ``seed``.
        seed: seed for ``np.random.default_rng`` when ``rng`` is None (None =
            fresh entropy, not reproducible).
    Returns:
        rainy: float32 array of the shape of ``clean``, values in [0, 1].
        info: dict with 'preset', 'angle' (base angle used), 'layer_angles',
            'layers' (per-layer parameters), 'veil' (a) and 'veil_light' (A).
    """
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f'unknown preset {preset!r}, choose from {sorted(PRESETS)}')
        name, params = preset, PRESETS[preset]
    else:
        name, params = 'custom', preset
    if rng is None:
        rng = np.random.default_rng(seed)
    img = _to_float_image(clean)
    h, w = img.shape[:2]

    if angle_deg is None:
        base = _uniform(rng, (-params['angle_range'], params['angle_range']))
    else:
        base = float(angle_deg)
    base = _wrap_angle(base)

    rainy = img.copy()
    layers = []
    for _ in range(int(params['layers'])):
        jitter = params['angle_jitter']
        layer_params = {
            'density': _uniform(rng, params['density']),
            'length': _uniform(rng, params['length']),
            'angle_deg': _wrap_angle(base + _uniform(rng, (-jitter, jitter))),
            'width': _uniform(rng, params['width']),
            'brightness': _uniform(rng, params['brightness']),
        }
        streaks = streak_layer((h, w), rng=rng, **layer_params)
        if rainy.ndim == 3:
            streaks = streaks[:, :, None]
        rainy = 1.0 - (1.0 - rainy) * (1.0 - streaks)  # screen blend
        layers.append(layer_params)

    veil = _uniform(rng, params['veil'])
    light = _uniform(rng, params['veil_light'])
    if veil > 0:
        rainy = rainy * (1.0 - veil) + veil * light

    rainy = np.clip(rainy, 0.0, 1.0).astype(np.float32)
    info = {
        'preset': name,
        'angle': base,
        'layer_angles': [p['angle_deg'] for p in layers],
        'layers': layers,
        'veil': veil,
        'veil_light': light,
    }
    return rainy, info


def dominant_orientation(img):
    """Dominant streak orientation of an image, from its structure tensor.

    Pass a streak image, best the difference ``rainy - clean``. The gradient
    structure tensor J = sum(grad grad^T) gives the dominant gradient
    direction; streaks run perpendicular to it.

    Args:
        img: H x W or H x W x C array (any real dtype); channels are averaged.
    Returns:
        Orientation in degrees in (-90, 90], same convention as the rest of this
        module (from vertical, positive = leaning right); 0.0 for a flat image.
    """
    a = np.asarray(img, dtype=np.float64)
    if a.ndim == 3:
        a = a.mean(axis=2)
    if a.ndim != 2 or min(a.shape) < 3:
        raise ValueError(f'img must be HxW or HxWxC with H, W >= 3, got {np.shape(img)}')
    # Scharr derivatives: less grid anisotropy than Sobel for thin oblique streaks.
    gx = cv2.Scharr(a, cv2.CV_64F, 1, 0)
    gy = cv2.Scharr(a, cv2.CV_64F, 0, 1)
    jxx, jyy, jxy = (gx * gx).sum(), (gy * gy).sum(), (gx * gy).sum()
    # Gradient angle from the x axis (image coordinates, y down). A streak with
    # orientation phi has "up" vector (sin phi, -cos phi) and normal
    # (cos phi, sin phi), so the gradient angle equals phi (mod 180).
    phi = 0.5 * np.degrees(np.arctan2(2.0 * jxy, jxx - jyy))
    return _wrap_angle(float(phi))


def list_images(clean_dir):
    """Image files directly in ``clean_dir`` in natural sorted order (2 before 10).

    Args:
        clean_dir: folder of clean photos.
    Returns:
        Paths of the files with an extension of ``discovery.IMAGE_EXTENSIONS``.
    """
    return [os.path.join(clean_dir, n) for n in image_names(clean_dir)]


def synthesize_folder(clean_dir, out_dir, preset, copies, seed, angle=None, limit=None,
                      progress=True):
    """Write ``rain-N.png`` / ``norain-N.png`` pairs for every clean image.

    N runs 1, 2, ... over images (natural sorted order) x copies: image i
    (0-based), copy c gives N = i * copies + c + 1. Pair N uses
    ``np.random.default_rng([seed, N])``. Existing files of the same names are
    overwritten.

    Args:
        clean_dir: folder of clean images (read with cv2 as 8-bit BGR; no subfolders).
        out_dir: output folder, created if needed; must differ from ``clean_dir``.
        preset: 'light' or 'heavy'.
        copies: rainy versions per clean image, >= 1.
        seed: non-negative integer.
        angle: fixed base angle in degrees, or None to draw one per copy.
        limit: use only the first ``limit`` images, or None for all.
        progress: show progress (a bar on a terminal, plain lines in a log).
    Returns:
        Number of pairs written.
    Raises:
        SynthesisError: bad folder, no images, unreadable or unwritable file.
    """
    if preset not in PRESETS:
        raise SynthesisError(f'unknown preset {preset!r}, choose from {sorted(PRESETS)}')
    if int(copies) < 1:
        raise SynthesisError(f'copies must be >= 1, got {copies}')
    if int(seed) < 0:
        raise SynthesisError(f'seed must be >= 0, got {seed}')
    if limit is not None and int(limit) < 1:
        raise SynthesisError(f'limit must be >= 1, got {limit}')
    if not os.path.isdir(clean_dir):
        raise SynthesisError(f'clean folder not found: {clean_dir}')
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise SynthesisError(f'output path exists and is not a folder: {out_dir}')
    if os.path.realpath(out_dir) == os.path.realpath(clean_dir):
        raise SynthesisError(f'out_dir must differ from clean_dir: {out_dir}')

    paths = list_images(clean_dir)
    if limit is not None:
        paths = paths[:int(limit)]
    if not paths:
        raise SynthesisError(
            f'no images ({", ".join(IMAGE_EXTENSIONS)}) found in {clean_dir}')
    for path in paths:  # cheap header check before anything is written
        if not cv2.haveImageReader(path):
            raise SynthesisError(f'cannot read image: {path}')
    os.makedirs(out_dir, exist_ok=True)

    copies = int(copies)
    written = 0
    bar = Progress(len(paths) * copies, 'synthesize', unit='pair', enabled=progress)
    try:
        for i, path in enumerate(paths):
            clean = cv2.imread(path, cv2.IMREAD_COLOR)
            if clean is None:
                raise SynthesisError(f'cannot read image: {path}')
            for c in range(copies):
                n = i * copies + c + 1
                rng = np.random.default_rng([int(seed), n])
                rainy, _ = add_rain(clean, preset, angle_deg=angle, rng=rng)
                rainy8 = np.round(np.clip(rainy, 0.0, 1.0) * 255.0).astype(np.uint8)
                for name, image in ((f'rain-{n}.png', rainy8), (f'norain-{n}.png', clean)):
                    target = os.path.join(out_dir, name)
                    if not cv2.imwrite(target, image):
                        raise SynthesisError(f'cannot write image: {target}')
                written += 1
                bar.update(1)
    finally:
        bar.close()
    return written


def background_images(folder, layers=None):
    """The clean backgrounds of a folder for ``composite_folder``, as Pairs.

    A paired folder (any layout ``discovery`` reads) gives its clean images, a folder of
    plain images the images; the layer folder's clean images follow, as in training
    (``rainlayers.background_pairs``).
    """
    pairs, _ = find_pairs(folder, allow_missing_gt=True, verbose=False)
    pairs = [p if p.clean_path else p._replace(clean_path=p.rain_path) for p in pairs]
    return rainlayers.background_pairs(pairs, layers)


def composite_folder(clean_dir, layer_dir, out_dir, copies, seed, limit=None, size=None,
                     progress=True):
    """Write ``rain-N.png`` / ``norain-N.png`` pairs made with real rain layers.

    Pair N (1, 2, ... over backgrounds x copies, as ``synthesize_folder`` numbers them) is
    ``rainlayers.sample_pair`` of background (N - 1) // copies with
    ``np.random.default_rng([seed, N])``.

    Args:
        clean_dir: backgrounds: a paired folder (its clean images) or plain images.
        layer_dir: the folder of pairs whose rain layers are used (``--rain_layers``).
        out_dir: output folder, created if needed.
        copies, seed, limit: as ``synthesize_folder``.
        size: side of square crops, or None for the largest window of both images.
        progress: progress lines.
    Returns:
        Number of pairs written.
    Raises:
        DataError: bad layer or background folder (one line naming the flag or file).
    """
    layers = rainlayers.load_layers(layer_dir, flag='--rain_layers', verbose=progress)
    backgrounds = background_images(clean_dir, layers)
    if limit is not None:
        backgrounds = backgrounds[:int(limit)]
    os.makedirs(out_dir, exist_ok=True)
    written = 0
    with Progress(len(backgrounds) * copies, 'composite', unit='pair', enabled=progress) as bar:
        for i, pair in enumerate(backgrounds):
            clean = images.load_pair(pair)[1]
            for c in range(copies):
                n = i * copies + c + 1
                rainy, window = rainlayers.sample_pair(
                    clean, layers, np.random.default_rng([int(seed), n]), size)
                for name, image in ((f'rain-{n}.png', rainy), (f'norain-{n}.png', window)):
                    images.write_image(os.path.join(out_dir, name),
                                       np.round(image * 255.0).astype(np.uint8))
                written += 1
                bar.update(1)
    return written


def build_parser():
    """Command-line parser of ``synthesize.py``."""
    parser = argparse.ArgumentParser(
        prog='synthesize.py',
        description='Add synthetic rain streaks to clean photos and write training pairs '
                    'rain-N.png / norain-N.png (N = 1.. over images x copies) into out_dir.',
        epilog='Angles: degrees from vertical, positive = streak leans right ("/"). '
               'Example: python synthesize.py --clean_dir photos --out_dir pairs '
               '--preset heavy --copies 3 --seed 0')
    parser.add_argument('--clean_dir', required=True,
                        help='folder of clean images (png, jpg, bmp, tif, webp, ...)')
    parser.add_argument('--out_dir', required=True,
                        help='output folder for the pairs (created; must differ from clean_dir)')
    parser.add_argument('--preset', choices=sorted(PRESETS), default='light',
                        help='light = Rain100L-like thin sparse streaks; '
                             'heavy = Rain100H-like dense streaks plus a veil (default: light)')
    parser.add_argument('--copies', type=positive_int, default=1,
                        help='rainy versions per clean image (default: 1)')
    parser.add_argument('--seed', type=nonnegative_int, default=0,
                        help='random seed >= 0; the same seed gives identical output '
                             '(default: 0)')
    parser.add_argument('--angle', type=float, default=None,
                        help='fixed base streak angle in degrees (default: random per copy '
                             'within the preset range; layers still jitter a few degrees)')
    parser.add_argument('--limit', type=positive_int, default=None,
                        help='use only the first N images in natural sorted order '
                             '(default: all)')
    parser.add_argument('--rain_layers', metavar='PAIRED_FOLDER', default=None,
                        help='real rain instead of streaks: lay the rain (rainy - clean) of a '
                             'random window of a random pair of this folder on each clean '
                             'image, as main.py --rain_layers trains; --clean_dir may then '
                             'be a paired folder (its clean images are used) and the layer '
                             "folder's clean images are backgrounds too; --preset and "
                             '--angle are not used')
    parser.add_argument('--size', type=positive_int, default=None,
                        help='with --rain_layers: square crops of this side (default: the '
                             'largest window the background and the layer both hold)')
    return parser


def main(argv=None):
    """CLI entry point. Returns 0; bad input exits with status 2 and a one-line message."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.rain_layers is not None:
            count = composite_folder(args.clean_dir, args.rain_layers, args.out_dir,
                                     args.copies, args.seed, limit=args.limit, size=args.size)
        else:
            count = synthesize_folder(args.clean_dir, args.out_dir, args.preset, args.copies,
                                      args.seed, angle=args.angle, limit=args.limit)
    except (SynthesisError, DataError, OSError) as err:
        parser.exit(2, f'{parser.prog}: error: {err}\n')
    print(f'wrote {count} pairs to {args.out_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
