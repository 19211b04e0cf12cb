"""Tests of the data modules through the ``dataloader`` facade: layout discovery
(loading/discovery.py), image reading (loading/images.py), crops and the batcher
(loading/batching.py), bad input.

Every layout is built in tmp_path from tiny images whose pixel values encode which file they
are, so the tests check the pairing itself, not only the file names.
"""
import os
import sys
import time
import warnings

import cv2
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import dataloader as dl  # noqa: E402
from conftest import write_pairs  # noqa: E402


@pytest.fixture(autouse=True)
def fresh_warnings():
    dl.reset_warnings()
    yield
    dl.reset_warnings()


def write(path, value, height=8, width=10):
    """Write a constant BGR image (value, value // 2, 255 - value) and return the path."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = np.empty((height, width, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = value, value // 2, 255 - value
    assert cv2.imwrite(str(path), image)
    return str(path)


def value_of(path):
    """The value written by write() (blue channel of the top-left pixel)."""
    return int(round(dl.read_image(path)[0, 0, 0] * 255))


def message(excinfo):
    text = str(excinfo.value)
    assert '\n' not in text
    return text


# ----------------------------------------------------------------------------------------------
# Discovery

def test_canonical_numeric_order_content_and_count_line(tmp_path, capsys):
    for i in range(1, 13):
        write(tmp_path / 'rain-{}.png'.format(i), 2 * i)
        write(tmp_path / 'norain-{}.png'.format(i), 2 * i + 1)
    pairs, layout = dl.find_pairs(str(tmp_path))
    assert layout == 'canonical rain-N/norain-N'
    assert [p.name for p in pairs] == ['rain-{}'.format(i) for i in range(1, 13)]  # 2 before 10
    for i, pair in enumerate(pairs, 1):
        assert pair.half is None
        assert value_of(pair.rain_path) == 2 * i
        assert value_of(pair.clean_path) == 2 * i + 1
    out = capsys.readouterr().out
    assert 'Found 12 pairs in {} (layout: canonical rain-N/norain-N)'.format(tmp_path) in out


@pytest.mark.parametrize('rain_fmt,clean_fmt,ext', [
    ('rain-{:03d}', 'norain-{:03d}', '.png'),   # test sets: zero-padded
    ('rain-{:03d}', 'norain-{}', '.bmp'),       # padding differs between the two sides
    ('rain-{}', 'norain-{:04d}', '.png'),
    ('rain_{}', 'norain_{}', '.tif'),
])
def test_canonical_padding_and_extensions(tmp_path, rain_fmt, clean_fmt, ext):
    for i in (1, 2, 10):
        write(tmp_path / (rain_fmt.format(i) + ext), 2 * i)
        write(tmp_path / (clean_fmt.format(i) + ext), 2 * i + 1)
    pairs, _ = dl.find_pairs(str(tmp_path), verbose=False)
    assert [p.name for p in pairs] == [rain_fmt.format(i) for i in (1, 2, 10)]
    for i, pair in zip((1, 2, 10), pairs):
        assert value_of(pair.rain_path) == 2 * i and value_of(pair.clean_path) == 2 * i + 1


def test_canonical_ignores_other_images_and_says_so(tmp_path, capsys):
    write(tmp_path / 'rain-1.png', 10)
    write(tmp_path / 'norain-1.png', 11)
    write(tmp_path / 'rainstreak-1.png', 12)
    pairs, _ = dl.find_pairs(str(tmp_path))
    assert len(pairs) == 1
    assert 'ignored 1 other image(s): rainstreak-1.png' in capsys.readouterr().out


@pytest.mark.parametrize('rain_dir,clean_dir', [
    ('rain', 'norain'), ('rainy', 'norain'), ('input', 'target'), ('data', 'gt'),
    ('Rain', 'GT'), ('rain', 'ground_truth'), ('input', 'label'),
])
def test_paired_subfolders(tmp_path, capsys, rain_dir, clean_dir):
    for i in (10, 2, 1):
        write(tmp_path / rain_dir / '{}.png'.format(i), 2 * i)
        write(tmp_path / clean_dir / '{}.png'.format(i), 2 * i + 1)
    pairs, layout = dl.find_pairs(str(tmp_path))
    assert layout == 'paired subfolders {}/ + {}/'.format(rain_dir, clean_dir)
    assert [p.name for p in pairs] == ['1', '2', '10']
    for i, pair in zip((1, 2, 10), pairs):
        assert os.path.dirname(pair.rain_path) == str(tmp_path / rain_dir)
        assert value_of(pair.rain_path) == 2 * i and value_of(pair.clean_path) == 2 * i + 1
    assert 'Found 3 pairs in' in capsys.readouterr().out


def test_heavy_rain_samples_layout_same_names_both_folders(tmp_path):
    for i in (1, 2, 3):
        write(tmp_path / 'rain' / 'norain-{}.png'.format(i), 2 * i)
        write(tmp_path / 'norain' / 'norain-{}.png'.format(i), 2 * i + 1)
    pairs, layout = dl.find_pairs(str(tmp_path), verbose=False)
    assert layout == 'paired subfolders rain/ + norain/'
    assert [p.name for p in pairs] == ['norain-1', 'norain-2', 'norain-3']
    assert [value_of(p.rain_path) for p in pairs] == [2, 4, 6]
    assert [value_of(p.clean_path) for p in pairs] == [3, 5, 7]


def test_paired_subfolders_match_by_numeric_id_when_padding_differs(tmp_path):
    for i in (1, 20):
        write(tmp_path / 'input' / '{:03d}.png'.format(i), 2 * i)
        write(tmp_path / 'target' / '{}.jpg'.format(i), 2 * i + 1)
    pairs, _ = dl.find_pairs(str(tmp_path), verbose=False)
    assert [p.name for p in pairs] == ['001', '020']
    assert [os.path.basename(p.clean_path) for p in pairs] == ['1.jpg', '20.jpg']


def test_rain12(tmp_path):
    for i in (1, 2, 10):
        write(tmp_path / '{}_in.png'.format(i), 2 * i)
        write(tmp_path / '{}_GT.png'.format(i), 2 * i + 1)
    pairs, layout = dl.find_pairs(str(tmp_path), verbose=False)
    assert layout == 'Rain12 N_in/N_GT'
    assert [p.name for p in pairs] == ['1_in', '2_in', '10_in']
    for i, pair in zip((1, 2, 10), pairs):
        assert value_of(pair.rain_path) == 2 * i and value_of(pair.clean_path) == 2 * i + 1


def test_rain1400_many_to_one(tmp_path):
    for n in (2, 10):
        write(tmp_path / 'ground_truth' / '{}.png'.format(n), n)
        for k in (1, 2, 11):
            write(tmp_path / 'rainy_image' / '{}_{}.png'.format(n, k), 100 + n + k)
    pairs, layout = dl.find_pairs(str(tmp_path), verbose=False)
    assert layout == 'Rain1400 many-to-one rainy_image/N_K -> ground_truth/N'
    assert [p.name for p in pairs] == ['2_1', '2_2', '2_11', '10_1', '10_2', '10_11']
    for pair in pairs:
        n, k = (int(x) for x in pair.name.split('_'))
        assert value_of(pair.clean_path) == n
        assert value_of(pair.rain_path) == 100 + n + k


def test_rain1400_jpg_names(tmp_path):
    write(tmp_path / 'ground_truth' / '901.jpg', 50)
    for k in range(1, 15):
        write(tmp_path / 'rainy_image' / '901_{}.jpg'.format(k), 60)
    pairs, _ = dl.find_pairs(str(tmp_path), verbose=False)
    assert len(pairs) == 14 and pairs[2].name == '901_3'
    assert {os.path.basename(p.clean_path) for p in pairs} == {'901.jpg'}


def side_by_side(path, left_value, right_value, height=8, half_width=6):
    left = np.full((height, half_width, 3), left_value, np.uint8)
    right = np.full((height, half_width, 3), right_value, np.uint8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), np.concatenate([left, right], axis=1))
    return str(path)


@pytest.mark.parametrize('half', ['left', 'right'])
def test_side_by_side_halves(tmp_path, capsys, half):
    for i in (10, 2):
        side_by_side(tmp_path / '{}.png'.format(i), 2 * i, 2 * i + 1)
    pairs, layout = dl.find_pairs(str(tmp_path), rainy_half=half)
    assert "side-by-side" in layout and half in layout
    assert [p.name for p in pairs] == ['2', '10']
    assert all(p.half == half and p.clean_path == p.rain_path for p in pairs)
    rain, clean = dl.load_pair(pairs[0])
    assert rain.shape == clean.shape == (8, 6, 3)
    left, right = 4 / 255.0, 5 / 255.0
    expected = (left, right) if half == 'left' else (right, left)
    np.testing.assert_allclose(rain, expected[0], atol=1e-7)
    np.testing.assert_allclose(clean, expected[1], atol=1e-7)
    assert 'Found 2 pairs' in capsys.readouterr().out


def test_side_by_side_odd_width_is_an_error(tmp_path):
    path = str(tmp_path / '1.png')
    cv2.imwrite(path, np.zeros((8, 11, 3), np.uint8))
    pairs, _ = dl.find_pairs(str(tmp_path), rainy_half='left', verbose=False)
    with pytest.raises(dl.DataError) as excinfo:
        dl.load_pair(pairs[0])
    text = message(excinfo)
    assert path in text and '11x8' in text and 'even width' in text and '--rainy_half' in text


def test_side_by_side_warns_once_when_setting_looks_swapped(tmp_path):
    rng = np.random.default_rng(0)
    for i in (1, 2):
        rainy = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)  # lots of fine detail
        clean = np.full((16, 16, 3), 128, np.uint8)
        cv2.imwrite(str(tmp_path / '{}.png'.format(i)), np.concatenate([rainy, clean], axis=1))
    right, _ = dl.find_pairs(str(tmp_path), rainy_half='right', verbose=False)
    with pytest.warns(dl.DataWarning, match='--rainy_half') as record:
        dl.load_pair(right[0])
        dl.load_pair(right[1])
    assert len([w for w in record if 'rainy_half' in str(w.message)]) == 1
    assert right[0].rain_path in str(record[0].message)
    dl.reset_warnings()
    left, _ = dl.find_pairs(str(tmp_path), rainy_half='left', verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter('error', dl.DataWarning)
        dl.load_pair(left[0])


def test_rainy_half_on_a_paired_layout_is_an_error(tmp_path):
    write(tmp_path / 'rain-1.png', 1)
    write(tmp_path / 'norain-1.png', 2)
    with pytest.raises(dl.DataError) as excinfo:
        dl.find_pairs(str(tmp_path), rainy_half='left', verbose=False)
    text = message(excinfo)
    assert str(tmp_path) in text and 'drop --rainy_half' in text


def test_limit_keeps_first_pairs_and_notes_shortfall(tmp_path, capsys):
    for i in range(1, 6):
        write(tmp_path / 'input' / '{}.png'.format(i), i)
        write(tmp_path / 'target' / '{}.png'.format(i), i)
    pairs, _ = dl.find_pairs(str(tmp_path), limit=3)
    assert [p.name for p in pairs] == ['1', '2', '3']
    assert 'Found 5 pairs' in capsys.readouterr().out
    pairs, _ = dl.find_pairs(str(tmp_path), limit=200)
    assert len(pairs) == 5
    assert 'asked for 200, found 5' in capsys.readouterr().out


def test_gt_less_folder_of_plain_images(tmp_path, capsys):
    write(tmp_path / '10.jpg', 1)
    write(tmp_path / '2.png', 2)
    write(tmp_path / 'web_Image1.png', 3)
    write(tmp_path / '2.jpg', 4)  # same stem as 2.png: names must stay unique
    pairs, layout = dl.find_pairs(str(tmp_path), allow_missing_gt=True)
    assert all(p.clean_path is None and p.half is None for p in pairs)
    assert [p.name for p in pairs] == ['2_jpg', '2_png', '10', 'web_Image1']
    assert 'without ground truth' in layout
    assert 'Found 4 rainy images' in capsys.readouterr().out
    rain, clean = dl.load_pair(pairs[2])
    assert clean is None and rain.shape == (8, 10, 3)


def test_gt_less_rainy_subfolder_and_canonical_rain_only(tmp_path):
    write(tmp_path / 'a' / 'input' / '1.png', 1)
    pairs, _ = dl.find_pairs(str(tmp_path / 'a'), allow_missing_gt=True, verbose=False)
    assert [(p.name, p.clean_path) for p in pairs] == [('1', None)]
    write(tmp_path / 'b' / 'rain-2.png', 1)
    write(tmp_path / 'b' / 'rain-1.png', 1)
    pairs, _ = dl.find_pairs(str(tmp_path / 'b'), allow_missing_gt=True, verbose=False)
    assert [(p.name, p.clean_path) for p in pairs] == [('rain-1', None), ('rain-2', None)]


def test_gt_less_folder_without_permission_is_an_error(tmp_path):
    for name in ('1.jpg', '2.jpg', 'web_Image1.png'):
        write(tmp_path / name, 1)
    with pytest.raises(dl.DataError) as excinfo:
        dl.find_pairs(str(tmp_path), verbose=False)
    text = message(excinfo)
    assert str(tmp_path) in text and 'saw 3 file(s): 1.jpg, 2.jpg, web_Image1.png' in text
    assert '--input' in text


# ----------------------------------------------------------------------------------------------
# Reading images

def test_read_image_bgr_float(tmp_path):
    image = np.zeros((4, 5, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 20, 255  # B, G, R
    path = str(tmp_path / 'x.png')
    cv2.imwrite(path, image)
    out = dl.read_image(path)
    assert out.dtype == np.float32 and out.shape == (4, 5, 3)
    np.testing.assert_array_equal(out[0, 0], np.float32([10, 20, 255]) / np.float32(255))
    assert out.min() >= 0 and out.max() == 1


def test_read_image_gray_alpha_16bit_warn_once_each(tmp_path):
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5)
    cv2.imwrite(str(tmp_path / 'g1.png'), gray)
    cv2.imwrite(str(tmp_path / 'g2.png'), gray)
    with pytest.warns(dl.DataWarning, match='grayscale') as record:
        first = dl.read_image(str(tmp_path / 'g1.png'))
        dl.read_image(str(tmp_path / 'g2.png'))
    assert len(record) == 1 and 'g1.png' in str(record[0].message)
    assert first.shape == (4, 5, 3)
    for c in range(3):
        np.testing.assert_allclose(first[..., c], gray / 255.0, atol=1e-7)

    bgra = np.zeros((4, 5, 4), np.uint8)
    bgra[..., 0], bgra[..., 1], bgra[..., 2], bgra[..., 3] = 1, 2, 3, 77
    cv2.imwrite(str(tmp_path / 'a.png'), bgra)
    with pytest.warns(dl.DataWarning, match='alpha') as record:
        out = dl.read_image(str(tmp_path / 'a.png'))
    assert 'a.png' in str(record[0].message)
    assert out.shape == (4, 5, 3)
    np.testing.assert_allclose(out[0, 0], np.array([1, 2, 3]) / 255.0, atol=1e-7)

    deep = np.full((4, 5, 3), 65535, np.uint16)
    deep[0, 0] = (0, 32768, 65535)
    cv2.imwrite(str(tmp_path / 'd.png'), deep)
    with pytest.warns(dl.DataWarning, match='16-bit') as record:
        out = dl.read_image(str(tmp_path / 'd.png'))
    assert 'd.png' in str(record[0].message)
    assert out.dtype == np.float32 and out.max() == 1.0
    np.testing.assert_allclose(out[0, 0], [0, 32768 / 65535.0, 1], atol=1e-7)


def test_read_image_corrupt_and_missing(tmp_path):
    bad = tmp_path / 'bad.png'
    bad.write_bytes(b'not an image at all')
    with pytest.raises(dl.DataError) as excinfo:
        dl.read_image(str(bad))
    text = message(excinfo)
    assert str(bad) in text and 'corrupt' in text and 'replace it or remove it' in text
    empty = tmp_path / 'empty.png'
    empty.write_bytes(b'')
    with pytest.raises(dl.DataError, match='corrupt'):
        dl.read_image(str(empty))
    with pytest.raises(dl.DataError) as excinfo:
        dl.read_image(str(tmp_path / 'gone.png'))
    assert 'gone.png does not exist' in message(excinfo)


def test_image_size_from_headers(tmp_path):
    for ext in ('.png', '.jpg', '.bmp'):
        path = write(tmp_path / ('x' + ext), 5, height=7, width=9)
        assert dl.image_size(path) == (7, 9, 1)
    cv2.imwrite(str(tmp_path / 'd.png'), np.zeros((3, 4), np.uint16))
    assert dl.image_size(str(tmp_path / 'd.png')) == (3, 4, 2)
    (tmp_path / 'junk.png').write_bytes(b'junk')
    assert dl.image_size(str(tmp_path / 'junk.png')) is None


# ----------------------------------------------------------------------------------------------
# Random crops

def coordinate_image(height, width):
    """[H, W, 3] with channel 0 = row, channel 1 = column, channel 2 = row * W + column."""
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([rows, cols, rows * width + cols], axis=-1).astype(np.float32)


def test_random_crop_same_window_bounds_and_every_offset(tmp_path):
    rain = coordinate_image(6, 5)
    clean = rain + 100
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(300):
        r, c = dl.random_crop(rain, clean, 4, rng)
        assert r.shape == c.shape == (4, 4, 3)
        np.testing.assert_array_equal(c, r + 100)
        top, left = int(r[0, 0, 0]), int(r[0, 0, 1])
        np.testing.assert_array_equal(r, rain[top:top + 4, left:left + 4])
        seen.add((top, left))
    assert seen == {(y, x) for y in range(3) for x in range(2)}  # 0..H-P and 0..W-P inclusive


def test_random_crop_exact_size_small_and_mismatch():
    image = coordinate_image(4, 4)
    r, c = dl.random_crop(image, image, 4, np.random.default_rng(1))
    np.testing.assert_array_equal(r, image)
    r, c = dl.random_crop(image, None, 2, np.random.default_rng(1))
    assert c is None and r.shape == (2, 2, 3)
    with pytest.raises(ValueError, match='smaller'):
        dl.random_crop(coordinate_image(3, 8), None, 4, np.random.default_rng(0))
    with pytest.raises(ValueError, match='differ'):
        dl.random_crop(image, coordinate_image(5, 4), 2, np.random.default_rng(0))


def test_random_crop_flip():
    image = coordinate_image(4, 4)
    rng = np.random.default_rng(3)
    flipped = plain = 0
    for _ in range(100):
        r, c = dl.random_crop(image, image + 1, 4, rng, flip=True)
        np.testing.assert_array_equal(c, r + 1)
        if np.array_equal(r, image[:, ::-1]):
            flipped += 1
        else:
            np.testing.assert_array_equal(r, image)
            plain += 1
    assert flipped > 20 and plain > 20
    rng = np.random.default_rng(3)
    for _ in range(30):
        r, _ = dl.random_crop(image, None, 4, rng)  # flip off by default
        np.testing.assert_array_equal(r, image)


# ----------------------------------------------------------------------------------------------
# TrainBatcher

def offset_pairs(folder, count=3):
    """Pairs where rain = clean + 40 everywhere: any correct crop has rain - clean = 40/255.

    Images 13, 14, 15, ... rows by 14 columns (input/ + target/ subfolders).
    """
    write_pairs(folder, count, size=(12, 14), seed=7, layout='subfolders', offset=40, grow=1)
    pairs, _ = dl.find_pairs(folder, verbose=False)
    return pairs


def test_batcher_shapes_range_and_pairing(tmp_path):
    pairs = offset_pairs(str(tmp_path))
    with dl.TrainBatcher(pairs, patch_size=8, batch_size=5, seed=0, verbose=False) as batcher:
        assert batcher.in_memory
        in_next_batch = 0.0
        for _ in range(3):
            start = time.perf_counter()
            rain, clean = batcher.next_batch()
            in_next_batch += time.perf_counter() - start
            assert rain.shape == clean.shape == (5, 8, 8, 3)
            assert rain.dtype == clean.dtype == np.float32
            assert rain.min() >= 0 and rain.max() <= 1 and clean.min() >= 0
            np.testing.assert_allclose(rain - clean, 40 / 255.0, atol=1e-6)
        assert batcher.batches_served == 3
        # The wait is measured inside next_batch: seconds, within the time spent there.
        assert 0.0 <= batcher.wait_seconds <= in_next_batch


def test_batcher_deterministic_and_lazy_mode_identical(tmp_path):
    pairs = offset_pairs(str(tmp_path))

    def batches(seed, budget, flip=False):
        with dl.TrainBatcher(pairs, 8, 4, flip=flip, seed=seed, memory_budget_mb=budget,
                             prefetch=2, verbose=False) as batcher:
            return batcher.in_memory, [batcher.next_batch() for _ in range(3)]

    mem_a, first = batches(5, 2048, flip=True)
    mem_b, second = batches(5, 2048, flip=True)
    lazy, third = batches(5, 0, flip=True)
    _, other = batches(6, 2048, flip=True)
    assert mem_a and mem_b and not lazy
    for a, b, c in zip(first, second, third):
        for x, y, z in zip(a, b, c):
            np.testing.assert_array_equal(x, y)
            np.testing.assert_array_equal(x, z)
    assert not np.array_equal(first[0][0], other[0][0])
    for rain, clean in third:
        np.testing.assert_allclose(rain - clean, 40 / 255.0, atol=1e-6)


def test_batcher_resumed_at_k_serves_the_uninterrupted_batches_from_k(tmp_path):
    # A run resumed at iteration k continues the crop sequence (batch k of seed S drawn from
    # default_rng([S, k])) instead of serving the first batches of the seed again.
    pairs = offset_pairs(str(tmp_path))
    with dl.TrainBatcher(pairs, 8, 4, seed=3, prefetch=1, verbose=False) as whole:
        uninterrupted = [whole.next_batch() for _ in range(5)]
    for budget in (2048, 0):  # in memory and read lazily
        with dl.TrainBatcher(pairs, 8, 4, seed=3, start=2, memory_budget_mb=budget, prefetch=1,
                             verbose=False) as resumed:
            got = [resumed.next_batch() for _ in range(3)]
        for (a, b), (c, d) in zip(uninterrupted[2:], got):
            np.testing.assert_array_equal(a, c)
            np.testing.assert_array_equal(b, d)
    assert not np.array_equal(uninterrupted[0][0], uninterrupted[2][0])
    # Batch 4 recomputed from its generator: pair indices, then (row, column, flip) draws.
    rng = np.random.default_rng([3, 4])
    indices = rng.integers(len(pairs), size=4)
    draws = rng.random((4, 3))
    for i, (index, (u_row, u_col, _)) in enumerate(zip(indices, draws)):
        clean = cv2.imread(pairs[index].clean_path).astype(np.float32) / 255.0
        height, width = clean.shape[:2]
        top, left = int(u_row * (height - 7)), int(u_col * (width - 7))
        np.testing.assert_allclose(uninterrupted[4][1][i], clean[top:top + 8, left:left + 8],
                                   atol=1e-7)
    with pytest.raises(ValueError, match='start'):
        dl.TrainBatcher(pairs, 8, 4, seed=3, start=-1, verbose=False)


def test_batcher_partial_cache_when_over_budget(tmp_path, capsys):
    pairs = offset_pairs(str(tmp_path))  # 6 images of 546..630 bytes
    budget_mb = 1500 / 2.0 ** 20
    with dl.TrainBatcher(pairs, 8, 4, seed=2, verbose=False) as full:
        expected = [full.next_batch() for _ in range(4)]
    with dl.TrainBatcher(pairs, 8, 4, seed=2, memory_budget_mb=budget_mb, prefetch=1,
                         decode_threads=2) as partial:
        assert not partial.in_memory
        assert 'reading images from disk' in capsys.readouterr().out
        got = [partial.next_batch() for _ in range(4)]
        assert 0 < partial.nbytes <= 1500
    for (a, b), (c, d) in zip(expected, got):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)


def test_batcher_close_stops_thread_and_is_idempotent(tmp_path, capsys):
    pairs = offset_pairs(str(tmp_path), count=2)
    batcher = dl.TrainBatcher(pairs, 8, 2, seed=0, prefetch=1)
    assert 'kept in memory' in capsys.readouterr().out
    assert batcher.alive and batcher._thread.daemon
    batcher.next_batch()
    batcher.close()
    assert not batcher.alive
    batcher.close()
    with pytest.raises(RuntimeError, match='closed'):
        batcher.next_batch()


def test_batcher_side_by_side_and_shared_ground_truth(tmp_path):
    for i in (1, 2):
        side_by_side(tmp_path / 'sbs' / '{}.png'.format(i), 60, 20, height=9, half_width=9)
    pairs, _ = dl.find_pairs(str(tmp_path / 'sbs'), rainy_half='left', verbose=False)
    with dl.TrainBatcher(pairs, 9, 3, seed=0, verbose=False) as batcher:
        rain, clean = batcher.next_batch()
        np.testing.assert_allclose(rain, 60 / 255.0, atol=1e-7)
        np.testing.assert_allclose(clean, 20 / 255.0, atol=1e-7)
        assert batcher.nbytes == 2 * 9 * 18 * 3
    write(tmp_path / 'r1400' / 'ground_truth' / '1.png', 5)
    for k in (1, 2, 3):
        write(tmp_path / 'r1400' / 'rainy_image' / '1_{}.png'.format(k), 9)
    pairs, _ = dl.find_pairs(str(tmp_path / 'r1400'), verbose=False)
    with dl.TrainBatcher(pairs, 4, 2, seed=0, verbose=False) as batcher:
        assert batcher.nbytes == 4 * 8 * 10 * 3  # the ground truth is decoded once


def test_batcher_lazy_mode_reraises_worker_errors(tmp_path, capsys):
    pairs = offset_pairs(str(tmp_path), count=1)
    batcher = dl.TrainBatcher(pairs, 8, 2, seed=0, memory_budget_mb=0, prefetch=1)
    assert not batcher.in_memory
    assert 'reading images from disk' in capsys.readouterr().out
    batcher.next_batch()
    with open(pairs[0].clean_path, 'wb') as handle:
        handle.write(b'broken')
    with pytest.raises(dl.DataError) as excinfo:
        for _ in range(5):  # a couple of batches may already be queued
            batcher.next_batch()
    assert pairs[0].clean_path in message(excinfo)
    with pytest.raises(dl.DataError):
        batcher.next_batch()  # the error sticks
    batcher.close()
    assert not batcher.alive


@pytest.mark.parametrize('budget', [2048, 0])
def test_batcher_image_smaller_than_patch(tmp_path, budget):
    write(tmp_path / 'input' / '1.png', 1, height=40, width=40)
    write(tmp_path / 'target' / '1.png', 1, height=40, width=40)
    small = write(tmp_path / 'input' / '2.png', 1, height=30, width=40)
    write(tmp_path / 'target' / '2.png', 1, height=30, width=40)
    pairs, _ = dl.find_pairs(str(tmp_path), verbose=False)
    with pytest.raises(dl.DataError) as excinfo:
        dl.TrainBatcher(pairs, 32, 2, memory_budget_mb=budget, verbose=False)
    text = message(excinfo)
    assert small in text and '40x30' in text and '--patch_size' in text
    with dl.TrainBatcher(pairs, 30, 2, memory_budget_mb=budget, verbose=False) as batcher:
        assert batcher.next_batch()[0].shape == (2, 30, 30, 3)  # exactly the patch size works


def test_batcher_rejects_pairs_without_ground_truth_and_empty_sets(tmp_path):
    path = write(tmp_path / '1.png', 1)
    with pytest.raises(dl.DataError) as excinfo:
        dl.TrainBatcher([dl.Pair('1', path, None, None)], 4, 2, verbose=False)
    assert path in message(excinfo) and 'ground truth' in message(excinfo)
    with pytest.raises(dl.DataError, match='no training pairs'):
        dl.TrainBatcher([], 4, 2, verbose=False)


# ----------------------------------------------------------------------------------------------
# Bad input

def test_resolve_dataset_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.makedirs('data/train/Rain100L')
    assert dl.resolve_dataset_dir('data/train/{}', 'Rain100L') == 'data/train/Rain100L'
    assert dl.resolve_dataset_dir(str(tmp_path / 'data'), 'ignored') == str(tmp_path / 'data')
    with pytest.raises(dl.DataError) as excinfo:
        dl.resolve_dataset_dir('data/train/{}', 'Foo')
    assert message(excinfo) == ('data/train/Foo does not exist; put the dataset there or pass '
                                '--data_path DIR')
    with pytest.raises(dl.DataError) as excinfo:
        dl.resolve_dataset_dir('data/test/{}', 'Foo', flag='--test_path')
    assert '--test_path DIR' in message(excinfo)


def test_missing_folder(tmp_path):
    with pytest.raises(dl.DataError) as excinfo:
        dl.find_pairs(str(tmp_path / 'nope'))
    assert str(tmp_path / 'nope') + ' does not exist' in message(excinfo)


def test_no_pairs_lists_layouts_and_what_was_seen(tmp_path):
    for name in ('a.txt', 'b.txt', 'c.txt'):
        (tmp_path / name).write_text('x')
    with pytest.raises(dl.DataError) as excinfo:
        dl.find_pairs(str(tmp_path))
    text = message(excinfo)
    assert 'no image pairs found in ' + str(tmp_path) in text
    assert 'canonical rain-N/norain-N' in text and 'Rain12' in text and 'Rain1400' in text
    assert 'saw 3 file(s): a.txt, b.txt, c.txt' in text
    os.makedirs(str(tmp_path / 'empty'))
    with pytest.raises(dl.DataError, match='empty'):
        dl.find_pairs(str(tmp_path / 'empty'))


def test_rainy_subfolder_without_clean_subfolder(tmp_path):
    write(tmp_path / 'input' / '1.png', 1)
    with pytest.raises(dl.DataError) as excinfo:
        dl.find_pairs(str(tmp_path))
    assert 'input/ has no clean partner folder' in message(excinfo)


def test_canonical_missing_partners_are_named(tmp_path):
    for i in (1, 2, 3, 4, 5):
        write(tmp_path / 'rain-{}.png'.format(i), i)
    write(tmp_path / 'norain-1.png', 1)
    with pytest.raises(dl.DataError) as excinfo:
        dl.find_pairs(str(tmp_path))
    text = message(excinfo)
    assert '4 rain-N image(s)' in text and 'rain-2.png, rain-3.png, rain-4.png (and 1 more)' \
        in text and 'no norain-N partner' in text
    for i in (2, 3, 4, 5):
        write(tmp_path / 'norain-{}.png'.format(i), i)
    write(tmp_path / 'norain-6.png', 6)
    with pytest.raises(dl.DataError) as excinfo:
        dl.find_pairs(str(tmp_path))
    assert 'norain-6.png' in message(excinfo) and 'no rain-N partner' in message(excinfo)


def test_subfolder_missing_partners_are_named(tmp_path):
    for i in (1, 2, 3):
        write(tmp_path / 'input' / '{}.png'.format(i), i)
    write(tmp_path / 'target' / '1.png', 1)
    write(tmp_path / 'target' / '2.png', 1)
    with pytest.raises(dl.DataError) as excinfo:
        dl.find_pairs(str(tmp_path))
    text = message(excinfo)
    assert str(tmp_path / 'input') in text and '3.png' in text and 'no clean partner' in text
    os.remove(str(tmp_path / 'input' / '3.png'))
    os.remove(str(tmp_path / 'input' / '2.png'))
    with pytest.raises(dl.DataError) as excinfo:
        dl.find_pairs(str(tmp_path))
    assert '2.png' in message(excinfo) and 'no rainy partner' in message(excinfo)


def test_duplicate_ids_are_ambiguous(tmp_path):
    write(tmp_path / 'rain-1.png', 1)
    write(tmp_path / 'rain-001.png', 1)
    write(tmp_path / 'norain-1.png', 1)
    with pytest.raises(dl.DataError) as excinfo:
        dl.find_pairs(str(tmp_path))
    assert 'rain-001.png' in message(excinfo) and 'same id' in message(excinfo)


def test_size_mismatch_names_both_files(tmp_path):
    rain = write(tmp_path / 'input' / '1.png', 1, height=8, width=10)
    clean = write(tmp_path / 'target' / '1.png', 1, height=8, width=12)
    pairs, _ = dl.find_pairs(str(tmp_path), verbose=False)
    with pytest.raises(dl.DataError) as excinfo:
        dl.load_pair(pairs[0])
    text = message(excinfo)
    assert rain in text and clean in text and '10x8' in text and '12x8' in text
    for budget in (2048, 0):
        with pytest.raises(dl.DataError, match='size mismatch'):
            dl.TrainBatcher(pairs, 4, 2, memory_budget_mb=budget, verbose=False)


def test_corrupt_file_in_training_set(tmp_path):
    write(tmp_path / 'input' / '1.png', 1)
    bad = tmp_path / 'target' / '1.png'
    os.makedirs(str(bad.parent))
    bad.write_bytes(b'\x89PNG garbage')
    pairs, _ = dl.find_pairs(str(tmp_path), verbose=False)
    with pytest.raises(dl.DataError) as excinfo:
        dl.TrainBatcher(pairs, 4, 2, verbose=False)
    assert str(bad) in message(excinfo) and 'corrupt' in message(excinfo)
