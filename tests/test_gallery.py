"""pictures/gallery.py: comparison strips, JPEG writing and the offline index.html."""
import html.parser
import os
import shutil
import subprocess
import urllib.parse

import cv2
import numpy as np
import pytest

from pictures import gallery

HEIGHT, WIDTH = 24, 32
CHROMIUM = '/usr/bin/chromium'


def _image(seed):
    """[24, 32, 3] float32 BGR in [0, 1]: a gradient plus noise (distinct per seed)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = np.stack([x / (WIDTH - 1), y / (HEIGHT - 1), np.full(x.shape, 0.5)], axis=-1)
    return np.clip(base + rng.uniform(-0.2, 0.2, base.shape), 0, 1).astype(np.float32)


def _metrics(psnr, ssim):
    return {'psnr': psnr, 'ssim': ssim, 'psnr_y': None if psnr is None else psnr + 1.0,
            'ssim_y': None if ssim is None else ssim + 0.01}


# (name, input psnr, output psnr); None = no ground truth. Gains: 2.0, 7.5, -1.0, 4.0.
ROWS = [('a', 20.0, 22.0), ('b', 18.5, 26.0), ('c', 30.0, 29.0), ('d', 25.0, 29.0),
        ('real 1', None, None), ('real&2', None, None)]


class _Links(html.parser.HTMLParser):
    """Collects tags, href/src values, and the names in the first cell of each image row."""

    def __init__(self):
        super().__init__()
        self.tags, self.links, self.names = [], [], []
        self._in_images, self._cell, self._first_cell = False, 0, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        for key in ('href', 'src'):
            if key in attrs:
                self.links.append(attrs[key])
        if tag == 'table':
            self._in_images = attrs.get('class') == 'images'
        if tag == 'tr':
            self._cell = 0
        if tag == 'td' and self._in_images:
            self._cell += 1
            self._first_cell = self._cell == 1

    def handle_endtag(self, tag):
        if tag == 'td':
            self._first_cell = False

    def handle_data(self, data):
        if self._first_cell and data.strip():
            self.names.append(data.strip())


def _results_folder(root):
    """A tiny results folder: derained PNGs, compare/ strips, and the results rows."""
    os.makedirs(root)
    rows = []
    for i, (name, before, after) in enumerate(ROWS):
        rain, derained, clean = _image(3 * i), _image(3 * i + 1), _image(3 * i + 2)
        output = os.path.join(root, name + '.png')
        assert cv2.imwrite(output, gallery.to_uint8(derained))
        has_gt = before is not None
        strip = gallery.compare_strip(rain, derained, clean if has_gt else None)
        compare = gallery.write_compare(os.path.join(root, 'compare', name + '.jpg'), strip)
        rows.append({'name': name, 'output': output, 'compare': compare, 'seconds': 0.5 + i,
                     'input': _metrics(before, 0.7 if has_gt else None),
                     **_metrics(after, 0.8 if has_gt else None)})
    return rows


def test_compare_strip_shape_and_panels():
    import utils
    rain, derained, clean = _image(0), _image(1), _image(2)
    strip = gallery.compare_strip(rain, derained, clean,
                                  ['rainy  23.41 dB / 0.7712', 'derained  31.20 dB / 0.9410',
                                   'clean'])
    assert strip.dtype == np.uint8
    assert strip.shape[0] > HEIGHT and strip.shape[1:] == (3 * WIDTH, 3)
    np.testing.assert_array_equal(strip[:HEIGHT, WIDTH:2 * WIDTH], utils.to_uint8(derained))
    np.testing.assert_array_equal(strip[:HEIGHT, :WIDTH], utils.to_uint8(rain))
    np.testing.assert_array_equal(strip[:HEIGHT, 2 * WIDTH:], utils.to_uint8(clean))
    assert strip[HEIGHT:].std() > 0  # the caption bars hold text
    two = gallery.compare_strip(rain, derained)
    assert two.shape[0] >= HEIGHT and two.shape[1] == 2 * WIDTH
    np.testing.assert_array_equal(two[:HEIGHT, WIDTH:], utils.to_uint8(derained))
    with pytest.raises(ValueError):
        gallery.compare_strip(rain, derained, clean, ['only one label'])
    with pytest.raises(ValueError):
        gallery.compare_strip(rain, derained[:10])


def test_write_compare_errors_name_the_path(tmp_path):
    strip = gallery.compare_strip(_image(0), _image(1))
    path = gallery.write_compare(str(tmp_path / 'new' / 'x.jpg'), strip)
    assert cv2.imread(path).shape == strip.shape
    blocker = tmp_path / 'file'
    blocker.write_text('not a folder')
    bad = str(blocker / 'x.jpg')
    with pytest.raises(OSError, match=bad):
        gallery.write_compare(bad, strip)


def test_index_links_sorting_and_no_network(tmp_path):
    root = str(tmp_path / 'results')
    rows = _results_folder(root)
    path = gallery.write_index(root, rows, 'ReMAEN <on> Demo')
    assert path == os.path.join(root, 'index.html')
    text = open(path, encoding='utf-8').read()
    parser = _Links()
    parser.feed(text)
    assert 'script' not in parser.tags and 'http://' not in text and 'https://' not in text
    assert 'ReMAEN &lt;on&gt; Demo' in text
    assert text.count('no ground truth') == 1
    assert len(parser.links) == 2 * len(ROWS)
    for link in parser.links:
        assert not urllib.parse.urlparse(link).scheme and not link.startswith('/'), link
        assert os.path.isfile(os.path.join(root, urllib.parse.unquote(link))), link
    gains = {name: after - before for name, before, after in ROWS if before is not None}
    expected = sorted(gains, key=gains.get, reverse=True) + ['real 1', 'real&2']
    assert parser.names == expected
    assert '+7.50' in text and '-1.00' in text  # the gains, signed


def test_index_without_ground_truth(tmp_path):
    rows = [{'name': 'p%d' % i, 'output': str(tmp_path / ('p%d.png' % i)), 'compare': None,
             'seconds': 1.0, 'input': _metrics(None, None), **_metrics(None, None)}
            for i in (2, 1)]
    text = open(gallery.write_index(str(tmp_path), rows, 'real'), encoding='utf-8').read()
    parser = _Links()
    parser.feed(text)
    assert parser.names == ['p2', 'p1']
    assert text.count('no ground truth') == 1 and 'n/a' not in text
    assert 'class="summary"' not in text


@pytest.mark.slow   # a browser start; .ci/run installs Debian's chromium for the slow tier
def test_index_renders_in_headless_chromium(tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.skip('%s is not installed (apt-get install chromium)' % CHROMIUM)
    root = str(tmp_path / 'results')
    index = gallery.write_index(root, _results_folder(root), 'ReMAEN on Demo')
    shot = str(tmp_path / 'shot.png')
    command = [CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
               '--no-first-run', '--disable-background-networking',
               '--disable-component-update', '--disable-sync',
               '--user-data-dir=%s' % (tmp_path / 'profile'), '--screenshot=%s' % shot,
               '--window-size=1000,800', 'file://' + os.path.abspath(index)]
    try:
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=60, check=False)
    finally:
        shutil.rmtree(str(tmp_path / 'profile'), ignore_errors=True)
    assert os.path.isfile(shot), 'chromium wrote no screenshot'
    image = cv2.imread(shot)
    assert image is not None and image.shape[:2] == (800, 1000)
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 10  # not a blank page
