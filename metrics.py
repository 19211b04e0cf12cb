"""Image-quality metrics for rain removal: PSNR and SSIM under two protocols.

Pure numpy, float64 internally; nothing is computed at import. Images are ``[H, W, 3]`` float
arrays in [0, 1] with OpenCV's BGR channel order.

Two protocols, labelled everywhere:

* **Paper protocol** (``psnr``, ``ssim``), used by ReMAEN (ICME 2019) and its release, which
  evaluate on the float [0, 1] images with all three colour channels:

  - PSNR: MSE over all pixels and all channels, peak value ``data_range`` (1.0).
  - SSIM (Wang et al. 2004): per channel, an 11x11 Gaussian window with sigma 1.5
    (normalised to sum 1), VALID filtering (no border padding: only windows that lie fully
    inside the image), K1 = 0.01, K2 = 0.03, population covariance, mean over the SSIM map
    and over the three channels. This equals scikit-image
    ``structural_similarity(a, b, channel_axis=-1, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1.0)``: scikit-image filters with ``truncate=3.5``
    (radius ``int(3.5 * 1.5 + 0.5) = 5``, an 11-tap kernel) in ``reflect`` mode and then
    crops ``(11 - 1) // 2 = 5`` pixels from every side before averaging, which leaves
    exactly the VALID windows, so the padding never enters the mean.

* **Y-channel protocol** (``psnr_y``, ``ssim_y``), used by most later deraining papers
  (PReNet, MPRNet, Restormer, ...; BasicSR ``test_y_channel=True``; MATLAB ``rgb2ycbcr``):
  the images are rounded to uint8, converted to the ITU-R BT.601 luma Y in [16, 235]
  (``bgr_to_y``) and compared with peak value 255, using the same PSNR and Gaussian
  VALID SSIM on that single channel.

PSNR cap: for identical images (MSE 0) PSNR is infinite; every PSNR here is instead capped
at ``PSNR_CAP = 100.0`` dB (also any finite value above it), so that the value is the same
everywhere, averages over a test set stay finite and it can be written to JSON. No function
here returns inf or NaN.

Validation (as BasicSR): both images must have the same shape, be float, finite and
``[H, W, 3]`` (``psnr``/``ssim`` also accept single-channel ``[H, W]``); SSIM needs at least
11x11 pixels. Violations raise ``ValueError``. ``psnr``/``ssim`` do not clip: values slightly
outside [0, 1] are used as they are; ``bgr_to_y`` clips because it rounds to uint8.
"""
import numpy as np

PSNR_CAP = 100.0

SSIM_WIN_SIZE = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03

# ITU-R BT.601 luma for 0..255 RGB values, offset 16 (MATLAB rgb2ycbcr, BasicSR rgb2ycbcr).
_Y_OFFSET = 16.0
_Y_WEIGHTS_RGB = (65.481, 128.553, 24.966)


def _check_image(img, name, allow_gray=False):
    """Validates one image and returns it as float64.

    Args:
      img: [H, W, 3] (or [H, W] when ``allow_gray``) float array, finite values.
      name: name used in error messages.
      allow_gray: whether a single-channel [H, W] image is accepted.

    Returns:
      The image as a float64 array of the same shape.
    """
    img = np.asarray(img)
    if not np.issubdtype(img.dtype, np.floating):
        raise ValueError(f'{name} must be a float array in [0, 1], got dtype {img.dtype}.')
    if img.ndim == 2 and allow_gray:
        pass
    elif img.ndim != 3 or img.shape[-1] != 3:
        expected = '[H, W] or [H, W, 3]' if allow_gray else '[H, W, 3]'
        raise ValueError(f'{name} must have shape {expected}, got {img.shape}.')
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f'{name} is empty: shape {img.shape}.')
    if not np.all(np.isfinite(img)):
        raise ValueError(f'{name} contains NaN or inf values.')
    return img.astype(np.float64)


def _check_pair(img1, img2, allow_gray=False):
    """Validates two images of the same shape; returns both as float64."""
    img1 = _check_image(img1, 'img1', allow_gray)
    img2 = _check_image(img2, 'img2', allow_gray)
    if img1.shape != img2.shape:
        raise ValueError(f'Image shapes differ: {img1.shape} vs {img2.shape}.')
    return img1, img2


def _check_data_range(data_range):
    data_range = float(data_range)
    if not np.isfinite(data_range) or data_range <= 0:
        raise ValueError(f'data_range must be a positive finite number, got {data_range}.')
    return data_range


def _psnr(img1, img2, data_range):
    """PSNR of two validated float64 arrays, capped at PSNR_CAP."""
    mse = np.mean((img1 - img2) ** 2, dtype=np.float64)
    if mse == 0:
        return PSNR_CAP
    value = 10.0 * np.log10(data_range ** 2 / mse)
    if value > PSNR_CAP:
        return PSNR_CAP
    return float(value)


def gaussian_window_1d(win_size=SSIM_WIN_SIZE, sigma=SSIM_SIGMA):
    """The normalised 1-D Gaussian taps of the SSIM window (the 2-D window is their outer product).

    Args:
      win_size: odd number of taps (11).
      sigma: standard deviation in pixels (1.5).

    Returns:
      [win_size] float64, positive, summing to 1.
    """
    radius = (win_size - 1) // 2
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (x / sigma) ** 2)
    return taps / taps.sum()


def _filter_valid(img, taps):
    """Separable VALID correlation of a 2-D image with ``taps`` along both axes.

    Args:
      img: [H, W] float64.
      taps: [K] float64 (symmetric, so correlation equals convolution).

    Returns:
      [H - K + 1, W - K + 1] float64.
    """
    k = taps.shape[0]
    h, w = img.shape
    rows = sum(taps[i] * img[i:h - k + 1 + i, :] for i in range(k))
    return sum(taps[i] * rows[:, i:w - k + 1 + i] for i in range(k))


def _ssim_channel(img1, img2, data_range, taps):
    """Mean SSIM of two validated [H, W] float64 images (Gaussian window, VALID)."""
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    mu1 = _filter_valid(img1, taps)
    mu2 = _filter_valid(img2, taps)
    # Population (biased) variances and covariance, as in Wang et al. 2004.
    var1 = _filter_valid(img1 * img1, taps) - mu1 * mu1
    var2 = _filter_valid(img2 * img2, taps) - mu2 * mu2
    cov = _filter_valid(img1 * img2, taps) - mu1 * mu2
    ssim_map = ((2 * mu1 * mu2 + c1) * (2 * cov + c2)) / (
        (mu1 ** 2 + mu2 ** 2 + c1) * (var1 + var2 + c2))
    return float(ssim_map.mean(dtype=np.float64))


def _ssim(img1, img2, data_range):
    """Mean SSIM over the map and the channels of two validated float64 images."""
    if min(img1.shape[0], img1.shape[1]) < SSIM_WIN_SIZE:
        raise ValueError(f'SSIM needs images of at least {SSIM_WIN_SIZE}x{SSIM_WIN_SIZE} '
                         f'pixels, got {img1.shape[0]}x{img1.shape[1]}.')
    taps = gaussian_window_1d()
    if img1.ndim == 2:
        return _ssim_channel(img1, img2, data_range, taps)
    values = [_ssim_channel(img1[..., c], img2[..., c], data_range, taps)
              for c in range(img1.shape[-1])]
    return float(np.mean(values))


def psnr(img1, img2, data_range=1.0):
    """PSNR, paper protocol: MSE over all pixels and channels, peak value ``data_range``.

    Args:
      img1: [H, W, 3] (or [H, W]) float array, nominally in [0, data_range]; not clipped.
      img2: same shape as ``img1``.
      data_range: peak value, 1.0 for [0, 1] images.

    Returns:
      PSNR in dB as a python float in (-inf, PSNR_CAP]; exactly PSNR_CAP (100.0) for identical
      images.
    """
    img1, img2 = _check_pair(img1, img2, allow_gray=True)
    return _psnr(img1, img2, _check_data_range(data_range))


def ssim(img1, img2, data_range=1.0):
    """SSIM, paper protocol: 11x11 Gaussian window (sigma 1.5), VALID, mean over map and channels.

    K1 = 0.01, K2 = 0.03, population covariance. Equals scikit-image ``structural_similarity(
    img1, img2, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=data_range)`` for float64 inputs.

    Args:
      img1: [H, W, 3] (or [H, W]) float array, H, W >= 11, nominally in [0, data_range];
        not clipped.
      img2: same shape as ``img1``.
      data_range: peak value, 1.0 for [0, 1] images.

    Returns:
      Mean SSIM as a python float in [-1, 1]; 1.0 for identical images.
    """
    img1, img2 = _check_pair(img1, img2, allow_gray=True)
    return _ssim(img1, img2, _check_data_range(data_range))


def bgr_to_y(img):
    """ITU-R BT.601 luma of a BGR image, as MATLAB ``rgb2ycbcr`` / BasicSR ``y_only=True``.

    The image is first quantised to uint8 levels: ``np.round(np.clip(img, 0, 1) * 255)``
    (numpy rounds halves to even), then
    ``Y = 16 + (65.481 * R + 128.553 * G + 24.966 * B) / 255`` on those 0..255 values.

    Args:
      img: [H, W, 3] float array in [0, 1], BGR channel order; clipped to [0, 1].

    Returns:
      [H, W] float64 luma in [16, 235].
    """
    img = _check_image(img, 'img')
    levels = np.round(np.clip(img, 0.0, 1.0) * 255.0)
    blue, green, red = levels[..., 0], levels[..., 1], levels[..., 2]
    w_r, w_g, w_b = _Y_WEIGHTS_RGB
    return _Y_OFFSET + (w_r * red + w_g * green + w_b * blue) / 255.0


def psnr_y(img1, img2):
    """PSNR, Y-channel protocol (PReNet, MPRNet, Restormer): on ``bgr_to_y``, peak value 255.

    Args:
      img1: [H, W, 3] float array in [0, 1], BGR.
      img2: same shape as ``img1``.

    Returns:
      PSNR in dB as a python float, at most PSNR_CAP (100.0; reached when the uint8-rounded
      lumas are identical).
    """
    img1, img2 = _check_pair(img1, img2)
    return _psnr(bgr_to_y(img1), bgr_to_y(img2), 255.0)


def ssim_y(img1, img2):
    """SSIM, Y-channel protocol: the Gaussian VALID SSIM of ``ssim`` on ``bgr_to_y``, range 255.

    Args:
      img1: [H, W, 3] float array in [0, 1], BGR, H, W >= 11.
      img2: same shape as ``img1``.

    Returns:
      Mean SSIM of the luma as a python float in [-1, 1].
    """
    img1, img2 = _check_pair(img1, img2)
    return _ssim(bgr_to_y(img1), bgr_to_y(img2), 255.0)


def channel_offset(output, clean):
    """The global colour offset of ``output``: per channel, the mean of ``output - clean``.

    A network that removes the rain but shifts the whole image's brightness or colour by a
    constant loses PSNR to that shift alone; ``psnr(output - offset, clean)`` is the PSNR
    without it (a diagnosis, not a correction: the offset is computed from the ground truth).

    Args:
      output: [H, W, 3] float array, BGR (e.g. in [0, 1]).
      clean: same shape as ``output``.

    Returns:
      float64 array [3], BGR order, in the images' units (multiply by 255 for 8-bit levels).
    """
    output, clean = _check_pair(output, clean)
    return (output - clean).mean(axis=(0, 1))


def evaluate(output, clean):
    """All four metrics of one derained image against its clean ground truth.

    Args:
      output: [H, W, 3] float array in [0, 1], BGR (the network output, already clipped).
      clean: same shape as ``output``, the ground truth.

    Returns:
      dict of python floats: ``psnr``, ``ssim`` (paper protocol: three BGR channels, range 1)
      and ``psnr_y``, ``ssim_y`` (Y-channel protocol: BT.601 luma of uint8, range 255).
    """
    output, clean = _check_pair(output, clean)
    return {
        'psnr': psnr(output, clean),
        'ssim': ssim(output, clean),
        'psnr_y': psnr_y(output, clean),
        'ssim_y': ssim_y(output, clean),
    }
