"""Tests of synthesize.py: determinism, ranges, streak direction, presets and the CLI."""

import os
import sys

import cv2
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import synthesize  # noqa: E402


def smooth_image(h=128, w=128):
    """H x W x 3 float32 clean image in [0.2, 0.7]: smooth gradients, no edges."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    b = 0.2 + 0.3 * x / w
    g = 0.3 + 0.2 * y / h
    r = 0.45 + 0.25 * np.sin(np.pi * x / w) * np.cos(np.pi * y / (2 * h))
    return np.stack([b, g, r], axis=2).astype(np.float32)


def angle_diff(a, b):
    """Distance between two orientations in degrees (mod 180), in [0, 90]."""
    d = abs(a - b) % 180.0
    return min(d, 180.0 - d)


def fourier_orientation(img):
    """Streak orientation from the peak of the 2-D Fourier power spectrum.

    Independent of synthesize.dominant_orientation. A streak whose upper end
    leans right by phi degrees runs along (sin phi, -cos phi) in image
    coordinates (x right, y down); its spectral energy lies along the normal
    (cos phi, sin phi), so the spectrum's angle atan2(ky, kx) equals phi mod 180.
    """
    a = np.asarray(img, np.float64)
    if a.ndim == 3:
        a = a.mean(axis=2)
    a = a - a.mean()
    h, w = a.shape
    window = np.outer(np.hanning(h), np.hanning(w))  # no spectral cross from the borders
    power = np.abs(np.fft.fftshift(np.fft.fft2(a * window))) ** 2
    ky = np.fft.fftshift(np.fft.fftfreq(h))[:, None] * np.ones((1, w))
    kx = np.fft.fftshift(np.fft.fftfreq(w))[None, :] * np.ones((h, 1))
    radius = np.hypot(kx, ky)
    mask = (radius > 0.02) & (radius < 0.35)
    theta = np.degrees(np.arctan2(ky[mask], kx[mask])) % 180.0
    hist, _ = np.histogram(theta, bins=180, range=(0.0, 180.0), weights=power[mask])
    offsets = np.arange(-6, 7)
    gauss = np.exp(-0.5 * (offsets / 2.0) ** 2)
    smooth = np.convolve(np.concatenate([hist[-6:], hist, hist[:6]]), gauss, 'valid')
    coarse = float(np.argmax(smooth)) + 0.5
    # Refine: power-weighted circular mean of the doubled angle within 20 deg of the peak.
    near = np.abs((theta - coarse + 90.0) % 180.0 - 90.0) < 20.0
    weights = power[mask][near]
    doubled = np.radians(2.0 * theta[near])
    peak = 0.5 * np.degrees(np.arctan2((weights * np.sin(doubled)).sum(),
                                       (weights * np.cos(doubled)).sum()))
    return (peak + 90.0) % 180.0 - 90.0


def psnr(a, b):
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return 10.0 * np.log10(1.0 / mse)


@pytest.mark.parametrize('preset', ['light', 'heavy'])
def test_same_seed_identical_different_seed_differs(preset):
    clean = smooth_image(96, 80)
    a, info_a = synthesize.add_rain(clean, preset, seed=3)
    b, info_b = synthesize.add_rain(clean, preset, seed=3)
    c, _ = synthesize.add_rain(clean, preset, seed=4)
    assert a.tobytes() == b.tobytes()
    assert info_a == info_b
    assert not np.array_equal(a, c)
    d, _ = synthesize.add_rain(clean, preset, rng=np.random.default_rng(3))
    assert np.array_equal(a, d)


@pytest.mark.parametrize('preset', ['light', 'heavy'])
@pytest.mark.parametrize('shape', [(64, 96, 3), (80, 64), (72, 72, 1)])
def test_output_range_dtype_shape(preset, shape):
    clean = np.random.default_rng(0).random(shape).astype(np.float32)
    rainy, info = synthesize.add_rain(clean, preset, seed=0)
    assert rainy.shape == clean.shape
    assert rainy.dtype == np.float32
    assert rainy.min() >= 0.0 and rainy.max() <= 1.0
    assert info['preset'] == preset
    assert len(info['layer_angles']) == synthesize.PRESETS[preset]['layers']


def test_uint8_input_matches_float_input():
    clean8 = np.round(smooth_image(64, 64) * 255).astype(np.uint8)
    a, _ = synthesize.add_rain(clean8, 'light', seed=1)
    b, _ = synthesize.add_rain(clean8.astype(np.float32) / 255.0, 'light', seed=1)
    np.testing.assert_array_equal(a, b)


def test_bad_inputs_raise_value_error():
    with pytest.raises(ValueError):
        synthesize.add_rain(np.full((8, 8, 3), 2.0, np.float32), 'light', seed=0)
    with pytest.raises(ValueError):
        synthesize.add_rain(smooth_image(8, 8), 'drizzle', seed=0)
    with pytest.raises(ValueError):
        synthesize.streak_layer((8, 8), 1.5, 5, 0, 0, 0.5, np.random.default_rng(0))


@pytest.mark.parametrize('preset', ['light', 'heavy'])
@pytest.mark.parametrize('angle', [-30.0, -10.0, 0.0, 15.0, 30.0])
def test_streak_orientation_matches_request(preset, angle):
    clean = smooth_image(128, 128)
    rainy, info = synthesize.add_rain(clean, preset, angle_deg=angle, seed=11)
    assert info['angle'] == angle
    jitter = synthesize.PRESETS[preset]['angle_jitter']
    assert all(angle_diff(a, angle) <= jitter + 1e-9 for a in info['layer_angles'])
    diff = rainy - clean
    assert angle_diff(fourier_orientation(diff), angle) < 10.0
    assert angle_diff(synthesize.dominant_orientation(diff), angle) < 10.0


def test_line_kernel_leans_right_for_positive_angle():
    """Convention check in pixel space: +30 deg puts the upper end to the right ('/')."""
    for angle, sign in ((30.0, 1.0), (-30.0, -1.0)):
        kernel = synthesize.line_kernel(41, angle)
        ys, xs = np.nonzero(kernel > 0.5)
        c = (kernel.shape[0] - 1) / 2.0
        upper = ys < c - 5
        assert np.sign(xs[upper].mean() - c) == sign
        assert np.sign(xs[~upper & (ys > c + 5)].mean() - c) == -sign
        # The fitted line's slope matches: dx / (-dy) = tan(angle).
        slope = np.polyfit(c - ys, xs - c, 1)[0]
        assert abs(np.degrees(np.arctan(slope)) - angle) < 2.0
    assert synthesize.line_kernel(15, 0.0, width=1.0).max() == pytest.approx(1.0)


def test_streak_layer_range_and_determinism():
    args = ((64, 80), 0.01, 20.0, 10.0, 0.8, 0.6)
    a = synthesize.streak_layer(*args, np.random.default_rng(5))
    b = synthesize.streak_layer(*args, np.random.default_rng(5))
    assert a.shape == (64, 80) and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert a.min() >= 0.0 and 0.0 < a.max() <= 0.6 + 1e-6
    empty = synthesize.streak_layer((16, 16), 0.0, 10.0, 0.0, 0.0, 0.5, np.random.default_rng(0))
    assert not empty.any()


@pytest.mark.parametrize('angle', [-45.0, -20.0, 0.0, 10.0, 35.0, 60.0, 90.0])
def test_dominant_orientation_of_grating(angle):
    """Stripes with normal (cos a, sin a) run at orientation a in the module's convention."""
    y, x = np.mgrid[0:96, 0:96].astype(np.float64)
    t = np.radians(angle)
    grating = np.sin(2 * np.pi * (x * np.cos(t) + y * np.sin(t)) / 12.0)
    assert angle_diff(synthesize.dominant_orientation(grating), angle) < 2.0
    assert angle_diff(fourier_orientation(grating), angle) < 2.0


def test_heavy_lowers_psnr_more_than_light():
    skimage_data = pytest.importorskip('skimage.data')
    clean = cv2.resize(skimage_data.astronaut(), (128, 128), interpolation=cv2.INTER_AREA)
    clean = clean.astype(np.float32) / 255.0
    light = [psnr(synthesize.add_rain(clean, 'light', seed=s)[0], clean) for s in range(3)]
    heavy = [psnr(synthesize.add_rain(clean, 'heavy', seed=s)[0], clean) for s in range(3)]
    assert np.mean(heavy) < np.mean(light) - 6.0
    assert max(heavy) < min(light)


def write_clean_images(folder):
    rng = np.random.default_rng(0)
    first = np.round(smooth_image(48, 64) * 255).astype(np.uint8)
    second = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    cv2.imwrite(os.path.join(folder, 'img2.png'), first)
    cv2.imwrite(os.path.join(folder, 'img10.bmp'), second)  # natural order: 2 before 10
    return [first, second]


def test_cli_writes_consecutive_pairs(tmp_path, capsys):
    clean_dir, out_dir = tmp_path / 'clean', tmp_path / 'out'
    clean_dir.mkdir()
    cleans = write_clean_images(str(clean_dir))
    argv = ['--clean_dir', str(clean_dir), '--out_dir', str(out_dir), '--preset', 'light',
            '--copies', '2', '--seed', '7']
    assert synthesize.main(argv) == 0
    assert sorted(os.listdir(out_dir)) == sorted(
        [f'rain-{n}.png' for n in range(1, 5)] + [f'norain-{n}.png' for n in range(1, 5)])
    for n in range(1, 5):
        clean = cleans[(n - 1) // 2]
        norain = cv2.imread(str(out_dir / f'norain-{n}.png'), cv2.IMREAD_UNCHANGED)
        rain = cv2.imread(str(out_dir / f'rain-{n}.png'), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(norain, clean)
        assert rain.shape == clean.shape and rain.dtype == np.uint8
        assert not np.array_equal(rain, clean)
    # Pair N uses default_rng([seed, N]); written values are rounded, not truncated.
    expected, _ = synthesize.add_rain(cleans[0], 'light', rng=np.random.default_rng([7, 2]))
    np.testing.assert_array_equal(cv2.imread(str(out_dir / 'rain-2.png')),
                                  np.round(expected * 255).astype(np.uint8))
    assert not np.array_equal(cv2.imread(str(out_dir / 'rain-1.png')),
                              cv2.imread(str(out_dir / 'rain-2.png')))
    # Same seed -> identical files; --limit keeps the first images only.
    again = tmp_path / 'again'
    argv_again = ['--clean_dir', str(clean_dir), '--out_dir', str(again), '--copies', '2',
                  '--seed', '7', '--limit', '1']
    assert synthesize.main(argv_again) == 0
    assert sorted(os.listdir(again)) == ['norain-1.png', 'norain-2.png', 'rain-1.png', 'rain-2.png']
    for name in os.listdir(again):
        assert (again / name).read_bytes() == (out_dir / name).read_bytes()
    capsys.readouterr()


def test_cli_fixed_angle(tmp_path):
    clean_dir, out_dir = tmp_path / 'clean', tmp_path / 'out'
    clean_dir.mkdir()
    clean = np.round(smooth_image(128, 128) * 255).astype(np.uint8)
    cv2.imwrite(str(clean_dir / 'a.png'), clean)
    count = synthesize.synthesize_folder(str(clean_dir), str(out_dir), 'heavy', 1, 0,
                                         angle=-25.0, progress=False)
    assert count == 1
    rain = cv2.imread(str(out_dir / 'rain-1.png')).astype(np.float64)
    assert angle_diff(fourier_orientation(rain - clean), -25.0) < 10.0


def _bad_cases(tmp_path):
    empty = tmp_path / 'empty'
    empty.mkdir()
    (empty / 'notes.txt').write_text('no images here')
    broken = tmp_path / 'broken'
    broken.mkdir()
    cv2.imwrite(str(broken / '1.png'), np.zeros((8, 8, 3), np.uint8))
    (broken / '2.png').write_bytes(b'this is not a png')
    good = tmp_path / 'good'
    good.mkdir()
    cv2.imwrite(str(good / '1.png'), np.zeros((8, 8, 3), np.uint8))
    missing = tmp_path / 'missing'
    out = str(tmp_path / 'out')
    return {
        'missing folder': (str(missing), out, str(missing)),
        'no images': (str(empty), out, str(empty)),
        'unreadable file': (str(broken), out, str(broken / '2.png')),
        'out_dir equals clean_dir': (str(good), str(good) + os.sep, str(good)),
    }


@pytest.mark.parametrize('case', ['missing folder', 'no images', 'unreadable file',
                                  'out_dir equals clean_dir'])
def test_cli_bad_input_one_line_error(tmp_path, capsys, case):
    clean_dir, out_dir, named = _bad_cases(tmp_path)[case]
    with pytest.raises(SystemExit) as exit_info:
        synthesize.main(['--clean_dir', clean_dir, '--out_dir', out_dir])
    assert exit_info.value.code not in (0, None)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert named in err
    assert 'Traceback' not in err
    assert not os.path.exists(tmp_path / 'out')


def test_help_mentions_every_option():
    text = synthesize.build_parser().format_help()
    for option in ('--clean_dir', '--out_dir', '--preset', '--copies', '--seed', '--angle',
                   '--limit', 'light', 'heavy'):
        assert option in text


def test_list_images_shares_the_loaders_extensions_and_order(tmp_path):
    """Clean photos are listed like dataset images: same extensions, natural order, no dotfiles."""
    import dataloader
    for name in ('img10.ppm', 'img2.pgm', 'img1.PNG', '.hidden.png', 'notes.txt'):
        (tmp_path / name).write_bytes(b'x')
    names = [os.path.basename(p) for p in synthesize.list_images(str(tmp_path))]
    assert names == ['img1.PNG', 'img2.pgm', 'img10.ppm']
    assert synthesize.IMAGE_EXTENSIONS is dataloader.IMAGE_EXTENSIONS
