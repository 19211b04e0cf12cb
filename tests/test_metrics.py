"""Tests of metrics.py: every value is compared with an independent computation.

References: scikit-image ``peak_signal_noise_ratio`` / ``structural_similarity`` for the paper
protocol, and scikit-image ``rgb2ycbcr`` on uint8 images (rounded here independently) for the
BT.601 Y-channel protocol.
"""
import os
import sys
import warnings

import cv2
import numpy as np
import pytest
from skimage import color, data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import metrics  # noqa: E402

SK_SSIM_ARGS = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
RANDOM_SHAPES = [(24, 24, 3), (37, 53, 3), (64, 48, 3)]
REAL_IMAGES = ['astronaut', 'coffee', 'chelsea']


def sk_psnr(a, b, data_range=1.0):
    return peak_signal_noise_ratio(a, b, data_range=data_range)


def sk_ssim(a, b, data_range=1.0, channel_axis=-1):
    return structural_similarity(a, b, channel_axis=channel_axis, data_range=data_range,
                                 **SK_SSIM_ARGS)


def sk_y(img_bgr):
    """Independent BT.601 Y: round half up to uint8, then scikit-image rgb2ycbcr on RGB."""
    levels = np.floor(np.clip(img_bgr, 0, 1) * 255 + 0.5).astype(np.uint8)
    return color.rgb2ycbcr(levels[..., ::-1].astype(np.float64) / 255.0)[..., 0]


def real_bgr(name, size=(64, 64)):
    """A skimage sample image as a small float64 BGR image in [0, 1]; size is (W, H)."""
    rgb = getattr(data, name)()
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return small[..., ::-1].astype(np.float64) / 255.0


def noisy(img, sigma, seed=0, clip=True):
    out = img + np.random.default_rng(seed).normal(0.0, sigma, img.shape)
    return np.clip(out, 0.0, 1.0) if clip else out


def random_pair(shape, seed):
    rng = np.random.default_rng(seed)
    a = rng.random(shape)
    return a, np.clip(a + rng.normal(0.0, 0.1, shape), 0, 1)


# ---- paper protocol against scikit-image --------------------------------------------------

@pytest.mark.parametrize('shape', RANDOM_SHAPES)
def test_psnr_ssim_match_skimage_random(shape):
    a, b = random_pair(shape, seed=sum(shape))
    assert metrics.psnr(a, b) == pytest.approx(sk_psnr(a, b), abs=1e-4)
    assert metrics.ssim(a, b) == pytest.approx(sk_ssim(a, b), abs=1e-6)


@pytest.mark.parametrize('name', REAL_IMAGES)
@pytest.mark.parametrize('sigma', [0.02, 0.1])
def test_psnr_ssim_match_skimage_real(name, sigma):
    clean = real_bgr(name, size=(64, 48))
    out = noisy(clean, sigma, seed=1)
    assert metrics.psnr(out, clean) == pytest.approx(sk_psnr(out, clean), abs=1e-4)
    assert metrics.ssim(out, clean) == pytest.approx(sk_ssim(out, clean), abs=1e-6)


def test_no_clipping_outside_unit_range():
    clean = real_bgr('astronaut')
    out = noisy(clean, 0.1, seed=2, clip=False)
    assert out.min() < 0 and out.max() > 1
    assert metrics.psnr(out, clean) == pytest.approx(sk_psnr(out, clean), abs=1e-4)
    assert metrics.ssim(out, clean) == pytest.approx(sk_ssim(out, clean), abs=1e-6)


def test_grayscale_and_data_range():
    a, b = random_pair((30, 40), seed=3)
    assert metrics.ssim(a, b) == pytest.approx(sk_ssim(a, b, channel_axis=None), abs=1e-6)
    assert metrics.psnr(a * 255, b * 255, data_range=255) == pytest.approx(
        sk_psnr(a * 255, b * 255, data_range=255), abs=1e-4)
    assert metrics.ssim(a * 255, b * 255, data_range=255) == pytest.approx(
        sk_ssim(a * 255, b * 255, data_range=255, channel_axis=None), abs=1e-6)


def test_ssim_is_valid_filtering():
    """SSIM is the mean over VALID windows only: skimage's full (reflect-padded) map cropped
    by 5 pixels on every side, not the mean of the whole padded map."""
    a, b = random_pair((32, 32, 3), seed=4)
    _, full_map = structural_similarity(a, b, channel_axis=-1, data_range=1.0, full=True,
                                        **SK_SSIM_ARGS)
    assert metrics.ssim(a, b) == pytest.approx(full_map[5:-5, 5:-5].mean(), abs=1e-6)
    assert metrics.ssim(a, b) != pytest.approx(full_map.mean(), abs=1e-6)


def test_gaussian_window():
    taps = metrics.gaussian_window_1d()
    x = np.arange(-5, 6)
    expected = np.exp(-x ** 2 / (2 * 1.5 ** 2))
    np.testing.assert_allclose(taps, expected / expected.sum(), rtol=1e-12)
    np.testing.assert_allclose(taps, cv2.getGaussianKernel(11, 1.5)[:, 0], rtol=1e-6)


# ---- Y-channel protocol ---------------------------------------------------------------------

@pytest.mark.parametrize('bgr, expected', [
    ((0, 0, 0), 16.0),
    ((1, 1, 1), 235.0),
    ((0, 0, 1), 16.0 + 65.481),    # red
    ((0, 1, 0), 16.0 + 128.553),   # green
    ((1, 0, 0), 16.0 + 24.966),    # blue
])
def test_bgr_to_y_primaries(bgr, expected):
    img = np.ones((2, 3, 3)) * np.asarray(bgr, dtype=np.float64)
    y = metrics.bgr_to_y(img)
    assert y.shape == (2, 3) and y.dtype == np.float64
    np.testing.assert_allclose(y, expected, atol=1e-9)


def test_bgr_to_y_rounds_to_uint8_first():
    levels = np.array([0, 17, 128, 254], dtype=np.float64)
    for offset, step in [(0.4, 0), (-0.4, 0), (0.6, 1), (-0.6, -1)]:
        # Grey pixels with every channel at (level + offset) / 255 -> uint8 level + step.
        vals = np.clip((levels + offset) / 255.0, 0, 1)
        img = np.repeat(vals[None, :, None], 3, axis=2)
        expected_levels = np.clip(levels + step, 0, 255)
        expected = 16.0 + (65.481 + 128.553 + 24.966) * expected_levels / 255.0
        np.testing.assert_allclose(metrics.bgr_to_y(img)[0], expected, atol=1e-9)
    # Out-of-range values are clipped before rounding.
    img = np.array([[[-0.2, -0.2, -0.2], [1.3, 1.3, 1.3]]])
    np.testing.assert_allclose(metrics.bgr_to_y(img)[0], [16.0, 235.0], atol=1e-9)


def test_bgr_to_y_matches_skimage():
    img = noisy(real_bgr('coffee'), 0.05, seed=5)
    np.testing.assert_allclose(metrics.bgr_to_y(img), sk_y(img), atol=1e-9)


@pytest.mark.parametrize('name', REAL_IMAGES)
def test_psnr_ssim_y_match_skimage(name):
    clean = real_bgr(name, size=(48, 64))
    out = noisy(clean, 0.05, seed=6)
    y_out, y_clean = sk_y(out), sk_y(clean)
    assert metrics.psnr_y(out, clean) == pytest.approx(
        sk_psnr(y_out, y_clean, data_range=255), abs=1e-4)
    assert metrics.ssim_y(out, clean) == pytest.approx(
        sk_ssim(y_out, y_clean, data_range=255, channel_axis=None), abs=1e-6)


@pytest.mark.parametrize('shape', RANDOM_SHAPES)
def test_psnr_ssim_y_match_skimage_random(shape):
    a, b = random_pair(shape, seed=7 + shape[1])
    ya, yb = sk_y(a), sk_y(b)
    assert metrics.psnr_y(a, b) == pytest.approx(sk_psnr(ya, yb, data_range=255), abs=1e-4)
    assert metrics.ssim_y(a, b) == pytest.approx(
        sk_ssim(ya, yb, data_range=255, channel_axis=None), abs=1e-6)


# ---- properties -----------------------------------------------------------------------------

def test_identical_images_capped_without_warnings():
    img = real_bgr('chelsea')
    with warnings.catch_warnings(), np.errstate(all='raise'):
        warnings.simplefilter('error')
        values = [metrics.psnr(img, img.copy()), metrics.psnr_y(img, img.copy()),
                  metrics.ssim(img, img.copy()), metrics.ssim_y(img, img.copy())]
        flat = np.full((20, 20, 3), 0.3)  # constant image: zero variance everywhere
        values += [metrics.ssim(flat, flat), metrics.ssim_y(flat, flat)]
    assert values[0] == metrics.PSNR_CAP == 100.0
    assert values[1] == metrics.PSNR_CAP
    assert values[2:] == pytest.approx([1.0] * 4, abs=1e-12)
    assert all(np.isfinite(values))


def test_psnr_cap_applies_to_tiny_errors():
    a = real_bgr('chelsea')
    b = a.copy()
    b[0, 0, 0] += 1e-9  # true PSNR ~ 200 dB
    assert 10 * np.log10(1.0 / np.mean((a - b) ** 2)) > 100
    assert metrics.psnr(a, b) == metrics.PSNR_CAP
    c = noisy(a, 1e-4, seed=8, clip=False)  # ~ 80 dB: below the cap, not capped
    assert metrics.psnr(a, c) == pytest.approx(sk_psnr(a, c), abs=1e-4)
    assert metrics.psnr(a, c) < metrics.PSNR_CAP


def test_symmetry():
    clean = real_bgr('astronaut')
    out = noisy(clean, 0.08, seed=9)
    for fn in (metrics.psnr, metrics.ssim, metrics.psnr_y, metrics.ssim_y):
        assert fn(out, clean) == pytest.approx(fn(clean, out), abs=1e-12)


def test_monotonic_in_noise():
    clean = real_bgr('coffee')
    outs = [noisy(clean, s, seed=10) for s in (0.01, 0.05, 0.2)]
    for fn in (metrics.psnr, metrics.ssim, metrics.psnr_y, metrics.ssim_y):
        vals = [fn(o, clean) for o in outs]
        assert vals[0] > vals[1] > vals[2], (fn.__name__, vals)


def test_evaluate():
    clean = real_bgr('chelsea')
    out = noisy(clean, 0.05, seed=11)
    result = metrics.evaluate(out, clean)
    assert list(result) == ['psnr', 'ssim', 'psnr_y', 'ssim_y']
    assert all(type(v) is float for v in result.values())
    assert result['psnr'] == metrics.psnr(out, clean)
    assert result['ssim'] == metrics.ssim(out, clean)
    assert result['psnr_y'] == metrics.psnr_y(out, clean)
    assert result['ssim_y'] == metrics.ssim_y(out, clean)
    assert result['psnr'] == pytest.approx(sk_psnr(out, clean), abs=1e-4)


def test_float32_inputs_are_evaluated_in_float64():
    clean = real_bgr('astronaut')
    out = noisy(clean, 0.05, seed=12)
    assert metrics.psnr(out.astype(np.float32), clean.astype(np.float32)) == pytest.approx(
        sk_psnr(out.astype(np.float32).astype(np.float64),
                clean.astype(np.float32).astype(np.float64)), abs=1e-4)


# ---- validation -----------------------------------------------------------------------------

ALL_PAIR_FNS = [metrics.psnr, metrics.ssim, metrics.psnr_y, metrics.ssim_y, metrics.evaluate,
                metrics.channel_offset]


@pytest.mark.parametrize('fn', ALL_PAIR_FNS)
def test_mismatched_shapes_raise(fn):
    with pytest.raises(ValueError, match='shapes differ'):
        fn(np.zeros((16, 16, 3)), np.zeros((16, 17, 3)))


@pytest.mark.parametrize('fn', ALL_PAIR_FNS)
@pytest.mark.parametrize('shape', [(16,), (16, 16, 4), (16, 16, 1), (2, 16, 16, 3)])
def test_wrong_ndim_raises(fn, shape):
    with pytest.raises(ValueError, match='shape'):
        fn(np.zeros(shape), np.zeros(shape))


@pytest.mark.parametrize('fn', [metrics.psnr_y, metrics.ssim_y, metrics.evaluate])
def test_gray_rejected_where_color_needed(fn):
    with pytest.raises(ValueError, match='shape'):
        fn(np.zeros((16, 16)), np.zeros((16, 16)))
    with pytest.raises(ValueError, match='shape'):
        metrics.bgr_to_y(np.zeros((16, 16)))


@pytest.mark.parametrize('fn', [metrics.ssim, metrics.ssim_y, metrics.evaluate])
@pytest.mark.parametrize('shape', [(10, 10, 3), (10, 40, 3), (40, 10, 3)])
def test_too_small_for_ssim_raises(fn, shape):
    with pytest.raises(ValueError, match='11x11'):
        fn(np.zeros(shape), np.zeros(shape))


def test_smallest_ssim_image_works():
    a, b = random_pair((11, 11, 3), seed=13)
    assert metrics.ssim(a, b) == pytest.approx(sk_ssim(a, b), abs=1e-6)
    assert metrics.psnr(np.zeros((2, 2, 3)), np.full((2, 2, 3), 0.1)) == pytest.approx(20.0)


@pytest.mark.parametrize('fn', ALL_PAIR_FNS)
@pytest.mark.parametrize('bad', [np.nan, np.inf])
def test_non_finite_raises(fn, bad):
    a = np.zeros((16, 16, 3))
    b = a.copy()
    b[3, 4, 1] = bad
    with pytest.raises(ValueError, match='NaN or inf'):
        fn(a, b)
    with pytest.raises(ValueError, match='NaN or inf'):
        fn(b, a)


@pytest.mark.parametrize('fn', ALL_PAIR_FNS)
def test_integer_dtype_raises(fn):
    a = np.zeros((16, 16, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match='float'):
        fn(a, a)


@pytest.mark.parametrize('data_range', [0, -1.0, np.nan])
def test_bad_data_range_raises(data_range):
    a, b = random_pair((16, 16, 3), seed=14)
    for fn in (metrics.psnr, metrics.ssim):
        with pytest.raises(ValueError, match='data_range'):
            fn(a, b, data_range=data_range)


def test_channel_offset_is_the_mean_difference_per_channel():
    a, b = random_pair((37, 53, 3), seed=15)
    offset = metrics.channel_offset(a, b)
    assert offset.shape == (3,)
    for c in range(3):
        assert offset[c] == pytest.approx(float(np.sum(a[..., c] - b[..., c])) / (37 * 53),
                                          abs=1e-12)
    # a pure colour shift: removing the offset restores the image exactly (PSNR capped)
    shift = np.array([0.02, -0.01, 0.035])
    shifted = b + shift
    np.testing.assert_allclose(metrics.channel_offset(shifted, b), shift, atol=1e-12)
    assert metrics.psnr(shifted - metrics.channel_offset(shifted, b), b) == metrics.PSNR_CAP
    # removing the offset never lowers PSNR: it is the MSE-minimising constant per channel
    assert metrics.psnr(a - offset, b) >= metrics.psnr(a, b)
