"""Dataset audit (audit.py): planted repeats are found, distinct scenes are not matched.

The scenes are made here: a smooth random field (several octaves of upsampled noise) with a
few random shapes and synthetic rain from ``synthesize.add_rain``. A set gets planted
repeats: the same background under other rain, a one-pixel crop, a JPEG re-encode, a
resized, a transposed and a flipped copy, and a whole pair copied under another name.
"""
import html
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse

import cv2
import numpy as np
import pytest

import audit
from auditing import warning
import metrics
import synthesize
from conftest import ROOT, SHARED_DATA as DATA, needs_shared_data

SIZE = (120, 180)   # height, width of the made scenes


def scene(seed, size=SIZE):
    """A natural-looking clean image: smooth random field plus shapes, uint8 BGR."""
    rng = np.random.default_rng(seed)
    height, width = size
    field = np.zeros((height, width, 3), np.float32)
    for cells, weight in ((3, 1.0), (8, 0.5), (24, 0.25), (60, 0.12)):
        noise = rng.random((cells, max(2, cells * width // height), 3)).astype(np.float32)
        field += weight * cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    image = np.clip(field / 1.9 * 255, 0, 255).astype(np.uint8)
    for _ in range(6):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        if rng.random() < 0.5:
            cv2.circle(image, centre, int(rng.integers(5, 30)), colour, -1, cv2.LINE_AA)
        else:
            corner = (centre[0] + int(rng.integers(10, 50)), centre[1] + int(rng.integers(5, 40)))
            cv2.rectangle(image, centre, corner, colour, -1)
    return image


def rainy(clean, seed):
    """Synthetic light rain on a uint8 BGR image, uint8 BGR."""
    rain, _ = synthesize.add_rain(clean, 'light', seed=seed)
    return np.clip(np.rint(rain * 255), 0, 255).astype(np.uint8)


def jpeg(image, quality=80):
    ok, data = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def write_pair(folder, number, clean, rain_seed, clean_ext='.png'):
    """rain-N.png + norain-N<ext> (canonical layout) with fresh rain."""
    cv2.imwrite(os.path.join(folder, 'rain-%d.png' % number), rainy(clean, rain_seed))
    cv2.imwrite(os.path.join(folder, 'norain-%d%s' % (number, clean_ext)), clean)


# Planted repeats: pair number -> (scene seed it copies, how, expected orientation name).
PLANTED = {
    13: (1, lambda s: s, 'as is'),                                   # other rain only
    14: (2, lambda s: s[1:, 1:], 'as is'),                           # one-pixel crop
    15: (3, jpeg, 'as is'),                                          # JPEG re-encode
    16: (4, lambda s: np.ascontiguousarray(s.transpose(1, 0, 2)), 'transposed'),
    17: (5, lambda s: np.ascontiguousarray(s[:, ::-1]), 'flipped left-right'),
    18: (6, lambda s: cv2.resize(s, None, fx=0.75, fy=0.75, interpolation=cv2.INTER_AREA),
         'as is'),                                                   # resized
}
DISTINCT = 12


@pytest.fixture(scope='module')
def planted(tmp_path_factory):
    """A canonical set: 12 distinct scenes, the PLANTED repeats and pair 19 = pair 7."""
    folder = str(tmp_path_factory.mktemp('planted'))
    for number in range(1, DISTINCT + 1):
        write_pair(folder, number, scene(number), rain_seed=100 + number)
    for number, (seed, how, _) in PLANTED.items():
        write_pair(folder, number, how(scene(seed)), rain_seed=200 + number,
                   clean_ext='.jpg' if how is jpeg else '.png')
    for prefix in ('rain', 'norain'):
        shutil.copy(os.path.join(folder, '%s-7.png' % prefix),
                    os.path.join(folder, '%s-19.png' % prefix))
    return folder, audit.audit_dataset(folder, ssim_pairs=0)


def names(finding):
    return finding['a']['pairs'][0], finding['b']['pairs'][0]


def test_every_planted_repeat_is_found_and_nothing_else(planted):
    _, data = planted
    found = {names(f): f for f in data['repeated_backgrounds']}
    expected = {('rain-%d' % seed, 'rain-%d' % n) for n, (seed, _, _) in PLANTED.items()}
    expected.add(('rain-7', 'rain-19'))
    assert set(found) == expected
    for number, (seed, _, orientation) in PLANTED.items():
        finding = found[('rain-%d' % seed, 'rain-%d' % number)]
        assert finding['transform'] == orientation, (number, finding)
        assert finding['similarity'] >= audit.MATCH_THRESHOLD
        assert finding['hash_distance'] <= audit.HASH_MAX_DISTANCE
        assert not finding['same_rain'], finding         # other rain: not the same image
    assert found[('rain-7', 'rain-19')]['same_rain']
    assert found[('rain-7', 'rain-19')]['similarity'] > 0.99


def test_identical_rainy_images_and_the_rest_of_the_report(planted):
    folder, data = planted
    assert [names(f) for f in data['identical_rainy']] == [('rain-7', 'rain-19')]
    assert data['pairs'] == DISTINCT + len(PLANTED) + 1
    assert data['layout'] == 'canonical rain-N/norain-N'
    assert data['unmatched'] == [] and data['scan']['problems'] == []
    assert data['scan']['sizes']['180x120'] == DISTINCT + 4
    assert data['scan']['sizes']['120x180'] == 1
    psnrs = []
    for number in range(1, data['pairs'] + 1):
        ext = '.jpg' if number == 15 else '.png'
        rain = cv2.imread(os.path.join(folder, 'rain-%d.png' % number)) / 255.0
        clean = cv2.imread(os.path.join(folder, 'norain-%d%s' % (number, ext))) / 255.0
        psnrs.append(metrics.psnr(rain, clean))
    psnr = data['scan']['psnr']
    assert psnr['count'] == data['pairs']
    assert psnr['mean'] == pytest.approx(np.mean(psnrs), abs=1e-4)
    assert psnr['min'] == pytest.approx(min(psnrs), abs=1e-4)
    assert data['scan']['ssim']['count'] == data['pairs']          # ssim_pairs=0: all


def test_orientations_and_hashes_agree():
    image = cv2.cvtColor(scene(50, (64, 96)), cv2.COLOR_BGR2GRAY)
    hashes = audit.phashes(image)
    for k in range(8):
        turned = audit.orient(image, k)
        assert np.array_equal(audit.orient(turned, audit.inverse(k)), image)
        assert audit.popcount(audit.phashes(np.ascontiguousarray(turned))[0] ^ hashes[k]) <= 2
        assert audit.aligned_similarity(image, turned, k) > 0.99
    other = cv2.cvtColor(scene(51, (64, 96)), cv2.COLOR_BGR2GRAY)
    assert max(audit.aligned_similarity(image, other, k) for k in range(8)) < 0.4


def test_cli_against_a_test_set_writes_json_and_html(tmp_path, capsys):
    train, test = str(tmp_path / 'train & co'), str(tmp_path / 'test')
    os.makedirs(train)
    for sub in ('input', 'target'):
        os.makedirs(os.path.join(test, sub))
    for number in range(1, 4):
        clean = scene(300 + number)
        cv2.imwrite(os.path.join(test, 'input', '%d.png' % number), rainy(clean, number))
        cv2.imwrite(os.path.join(test, 'target', '%d.png' % number), clean)
    write_pair(train, 1, scene(400), 1)
    write_pair(train, 2, np.ascontiguousarray(scene(302)[::-1]), 2)   # test 2 upside down
    out = str(tmp_path / 'out')
    assert audit.main([train, '--against', test, '--out', out]) == 0
    printed = capsys.readouterr().out
    assert 'train & co/rain-2 ~ test/2  similarity' in printed
    assert '1 of 2 train & co pairs and 1 of 3 test pairs share a clean background' in printed
    with open(os.path.join(out, 'audit.json')) as handle:
        result = json.load(handle)
    shared = result['comparisons'][0]['shared_backgrounds']
    assert [names(f) for f in shared] == [('rain-2', '2')]
    assert shared[0]['transform'] == 'flipped upside down'
    assert shared[0]['a']['path'].endswith('norain-2.png')
    assert shared[0]['b']['path'].endswith(os.path.join('target', '2.png'))
    assert [d['name'] for d in result['datasets']] == ['train & co', 'test']
    with open(os.path.join(out, 'audit.html'), encoding='utf-8') as handle:
        page = handle.read()
    assert 'train &amp; co' in page and 'train & co' not in page
    links = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert links and not any(link.startswith(('/', 'http')) for link in links)
    for link in links:
        assert os.path.exists(os.path.join(out, urllib.parse.unquote(html.unescape(link))))


def test_unmatched_and_unreadable_files_are_listed(tmp_path):
    folder = str(tmp_path)
    for number in range(1, 4):
        write_pair(folder, number, scene(500 + number), number)
    os.remove(os.path.join(folder, 'norain-3.png'))                   # rain-3 has no partner
    cv2.imwrite(os.path.join(folder, 'norain-9.png'), scene(509))     # no rainy partner
    with open(os.path.join(folder, 'rain-2.png'), 'wb') as handle:
        handle.write(b'not an image')
    data = audit.audit_dataset(folder)
    assert 'have no norain-N partner: rain-3.png' in data['pairing_error']
    assert sorted(os.path.basename(p) for p in data['unmatched']) == ['norain-9.png',
                                                                    'rain-3.png']
    assert data['pairs'] == 2
    assert [p['pair'] for p in data['scan']['problems']] == ['rain-2']
    assert 'cannot read image' in data['scan']['problems'][0]['error']


def test_training_warning_lines_and_cache(tmp_path, monkeypatch):
    train, test, logs = (str(tmp_path / name) for name in ('train', 'test', 'logs'))
    os.makedirs(train)
    os.makedirs(test)
    for number in range(1, 4):
        write_pair(test, number, scene(600 + number), number)
    write_pair(train, 1, scene(601), 11)                                  # shares test 1
    write_pair(train, 2, scene(603)[:, 1:], 12)                           # shares test 3
    write_pair(train, 3, np.ascontiguousarray(scene(603).transpose(1, 0, 2)), 13)
    write_pair(train, 4, scene(700), 14)
    logged = []
    lines = warning.training_warning(train, test, 'MyTest', logs, log=logged.append)
    assert lines == logged == [
        'warning: 1 training pair shares its clean background with the test set MyTest: '
        '1~1',
        'warning: 2 training pairs share their clean background with the test set MyTest: '
        '2~3, 3~3']
    assert os.path.isfile(os.path.join(logs, warning.CACHE_NAME))

    def fail(*args):
        raise AssertionError('the cache was not used')
    monkeypatch.setattr(warning, 'shared_with_test', fail)
    assert warning.training_warning(train, test, 'MyTest', logs, log=lambda line: None) == lines
    monkeypatch.undo()
    os.remove(os.path.join(train, 'rain-1.png'))
    os.remove(os.path.join(train, 'norain-1.png'))                   # the set changed
    assert len(warning.training_warning(train, test, 'MyTest', logs, log=logged.append)) == 1
    missing = warning.training_warning(str(tmp_path / 'nope'), test, 'MyTest', logs, log=print)
    assert len(missing) == 1 and missing[0].startswith('note: ')


def test_bad_input_gives_one_error_line(tmp_path, capsys):
    assert audit.main([str(tmp_path / 'missing')]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['error: %s does not exist; pass the folder holding the dataset'
                   % (tmp_path / 'missing')]
    assert audit.main(['NoSuchSet', '--against', str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: dataset NoSuchSet not found')
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'audit.py'), str(tmp_path)],
                            capture_output=True, text=True, cwd=str(tmp_path), timeout=120)
    assert result.returncode == 2
    assert [line for line in result.stderr.splitlines() if line.strip()][0].startswith(
        'error: no image pairs found in')
    assert 'Traceback' not in result.stderr


@needs_shared_data('Rain100L-val', 'RainTrainL')
def test_no_false_matches_on_real_backgrounds():
    """Rain100L-val 79 and 89 (two savanna horizons) and 2,000 train/test pairs: no match."""
    from loading import discovery
    test_pairs, _ = discovery.find_pairs(os.path.join(DATA, 'Rain100L-val'), verbose=False)
    train_pairs, _ = discovery.find_pairs(os.path.join(DATA, 'RainTrainL'), verbose=False)
    test = audit.scan('test', test_pairs, backgrounds_only=True, show_progress=False)
    train = audit.scan('train', train_pairs[:40], backgrounds_only=True, show_progress=False)
    assert audit.match_backgrounds(train['backgrounds'], test['backgrounds']) == []
    assert audit.match_backgrounds(test['backgrounds']) == []
    by_name = {b.pairs[0].name: b for b in test['backgrounds'][0]}
    assert max(audit.aligned_similarity(by_name['79'].thumb, by_name['89'].thumb, k)
               for k in range(8)) < audit.MATCH_THRESHOLD / 2
