"""Training on real rain layers (``--rain_layers``, loading/rainlayers.py), the warm start
(``--init_weights``) and the audit's shared-rain check, on tiny generated data.

Every expected value is computed here in numpy from the files written, not taken from the
library: the composite, the Kaplan-Meier means, the crops, flips and the seeded draw order.
"""
import hashlib
import json
import os
import shutil

import cv2
import numpy as np
import pytest

from auditing import audit_scan
from auditing import backgrounds
import dataloader
from console import errors
from loading import rainlayers
from conftest import write_pairs

SIZE = (20, 28)   # height, width of the tiny layer pairs


def write_layers(folder, count=3, size=SIZE, seed=5, clip=True):
    """Layer pairs rain-N/norain-N with grey rain rainy = min(clean + S, 255) (uint8).

    Returns:
      list of (rainy uint8, clean uint8), pair 1 first.
    """
    os.makedirs(folder, exist_ok=True)
    written = []
    for index in range(1, count + 1):
        rng = np.random.default_rng([seed, index])
        clean = rng.integers(0, 256 if clip else 150, size + (3,)).astype(np.int32)
        rain = (rng.random(size) < 0.3) * rng.integers(20, 200 if clip else 100, size)
        rainy = np.minimum(clean + rain[..., None], 255)
        for name, image in (('rain-%d.png' % index, rainy), ('norain-%d.png' % index, clean)):
            assert cv2.imwrite(os.path.join(folder, name), image.astype(np.uint8))
        written.append((rainy.astype(np.uint8), clean.astype(np.uint8)))
    return written


def kaplan_meier_means(values, censored):
    """E[S | S >= t] over levels 0..255 by the textbook product-limit loop (the test's own)."""
    levels = np.rint(values * 255).astype(int)
    survival, mass = 1.0, np.zeros(256)
    for s in range(256):
        deaths = np.sum((levels == s) & ~censored)
        at_risk = np.sum(levels >= s)
        if at_risk:
            mass[s] = survival * deaths / at_risk
            survival *= 1 - deaths / at_risk
    mass[255] += survival
    out = []
    for t in range(256):
        tail = mass[t:].sum()
        out.append(max((mass[t:] * np.arange(t, 256) / 255.0).sum() / tail, t / 255.0)
                   if tail > 1e-12 else 1.0)
    return np.array(out)


# ----------------------------------------------------------------------------- compositing
@pytest.mark.parametrize('mode', rainlayers.FILL_MODES)
def test_own_background_gives_back_the_rainy_image(tmp_path, mode):
    written = write_layers(str(tmp_path / 'layers'))
    layers = rainlayers.load_layers(str(tmp_path / 'layers'), verbose=False, mode=mode)
    for layer, (rainy, clean) in zip(layers.layers, written):
        rain_f, clean_f = rainy / np.float32(255), clean / np.float32(255)
        values, clipped = rainlayers.rain_layer(rain_f, clean_f)
        filled = rainlayers.fill_clipped(values, clipped, clean_f, layer.means, mode)
        out = rainlayers.composite(clean_f, filled)
        unclipped = rainy < 255
        assert unclipped.any() and (~unclipped).any()
        np.testing.assert_allclose(out[unclipped], rain_f[unclipped], atol=1e-6)
        np.testing.assert_allclose(out[~unclipped], 1.0, atol=1e-6)


def test_a_layer_on_black_is_the_layer(tmp_path):
    written = write_layers(str(tmp_path / 'layers'))
    layers = rainlayers.load_layers(str(tmp_path / 'layers'), verbose=False)
    for layer, (rainy, clean) in zip(layers.layers, written):
        rain_f, clean_f = rainy / np.float32(255), clean / np.float32(255)
        values, clipped = rainlayers.rain_layer(rain_f, clean_f)
        filled = rainlayers.fill_clipped(values, clipped, clean_f, layer.means)
        np.testing.assert_array_equal(rainlayers.composite(np.zeros_like(filled), filled),
                                      filled)
        exact = rainy < 255
        np.testing.assert_allclose(filled[exact], (rainy.astype(int) - clean)[exact] / 255.0,
                                   atol=1e-6)
        # A clipped pixel is never below what the pair shows (S >= 1 - clean), and grey.
        grey = (rainy == 255).any(axis=-1)
        assert np.all(filled[rainy == 255] >= 1 - clean_f[rainy == 255] - 1e-6)
        assert np.all(np.ptp(filled[grey & (rainy == 255).all(axis=-1)], axis=-1) == 0)


def test_censored_means_are_the_kaplan_meier_estimate():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, 4000) / 255.0
    bound = rng.integers(0, 256, 4000) / 255.0
    censored = truth >= bound                    # clipped: only the bound is seen
    values = np.where(censored, bound, truth).astype(np.float32)
    np.testing.assert_allclose(rainlayers.censored_means(values, censored),
                               kaplan_meier_means(values, censored), atol=1e-5)
    # Without censoring it is the plain conditional mean.
    plain = rainlayers.censored_means(truth.astype(np.float32), np.zeros(4000, bool))
    for t in (0, 60, 200):
        assert plain[t] == pytest.approx(truth[truth >= t / 255.0].mean(), abs=1e-5)


# ----------------------------------------------------------------------------- batches
def expected_batch(seed, k, backgrounds_, layers_, patch, batch, flip_backgrounds=False):
    """Batch k of the seeded sampler, computed here: draws, crops, flips, composite."""
    rng = np.random.default_rng([seed, k])
    indices = rng.integers(len(backgrounds_), size=batch)
    draws = rng.random((batch, 3))
    layer_indices = rng.integers(len(layers_), size=batch)
    layer_draws = rng.random((batch, 3))
    rain_out, clean_out = [], []
    for i in range(batch):
        clean = backgrounds_[indices[i]]
        top = int(draws[i, 0] * (clean.shape[0] - patch + 1))
        left = int(draws[i, 1] * (clean.shape[1] - patch + 1))
        crop = clean[top:top + patch, left:left + patch] / np.float32(255)
        if flip_backgrounds and draws[i, 2] < 0.5:
            crop = crop[:, ::-1]
        rainy, lclean = layers_[layer_indices[i]]
        top = int(layer_draws[i, 0] * (rainy.shape[0] - patch + 1))
        left = int(layer_draws[i, 1] * (rainy.shape[1] - patch + 1))
        rain = (rainy.astype(int) - lclean)[top:top + patch, left:left + patch] / 255.0
        if layer_draws[i, 2] < 0.5:
            rain = rain[:, ::-1]
        rain_out.append(np.minimum(crop + rain, 1.0))
        clean_out.append(crop)
    return np.array(rain_out), np.array(clean_out)


def test_batches_crops_flips_order_and_resume(tmp_path):
    write_pairs(str(tmp_path / 'train'), 3, size=(18, 22), seed=0)
    layers_ = write_layers(str(tmp_path / 'layers'), clip=False)
    pairs, _ = dataloader.find_pairs(str(tmp_path / 'train'), verbose=False)
    layers = rainlayers.load_layers(str(tmp_path / 'layers'), patch_size=8, verbose=False)
    background = rainlayers.background_pairs(pairs, layers)
    # Backgrounds: the 3 training clean images, then the 3 layer clean images, each once.
    assert [p.clean_path for p in background] == (
        [p.clean_path for p in pairs] + [layer.pair.clean_path for layer in layers.layers])
    assert all(p.rain_path == p.clean_path for p in background)
    assert len(rainlayers.background_pairs(pairs + pairs, layers)) == 6
    cleans = [cv2.imread(p.clean_path) for p in background]
    with dataloader.TrainBatcher(background, 8, 5, seed=7, verbose=False, prefetch=1,
                                 layers=layers) as batcher:
        served = [batcher.next_batch() for _ in range(4)]
    flips = 0
    for k, (rain, clean) in enumerate(served):
        want_rain, want_clean = expected_batch(7, k, cleans, layers_, 8, 5)
        np.testing.assert_allclose(clean, want_clean, atol=1e-6)
        np.testing.assert_allclose(rain, want_rain, atol=1e-6)
        flips += np.sum(np.random.default_rng([7, k]).random((5, 3)) < 0.5)
    assert flips > 0
    # A batcher started at iteration 2 (a resumed run) serves batches 2 and 3 again.
    with dataloader.TrainBatcher(background, 8, 5, seed=7, verbose=False, prefetch=1,
                                 layers=layers, start=2, memory_budget_mb=0) as resumed:
        for k in (2, 3):
            rain, clean = resumed.next_batch()
            np.testing.assert_array_equal(rain, served[k][0])
            np.testing.assert_array_equal(clean, served[k][1])


def test_sample_pair_is_a_window_with_layer_rain(tmp_path):
    layers_ = write_layers(str(tmp_path / 'layers'), clip=False)
    layers = rainlayers.load_layers(str(tmp_path / 'layers'), verbose=False)
    background = np.random.default_rng(1).random((30, 16, 3)).astype(np.float32)
    rainy, clean = rainlayers.sample_pair(background, layers, np.random.default_rng(3))
    rng = np.random.default_rng(3)
    index = rng.integers(3)
    back, draws = rng.random(3), rng.random(3)
    height, width = 20, 16                      # the largest window both hold
    top = int(back[0] * (30 - height + 1))
    np.testing.assert_array_equal(clean, background[top:top + height])
    layer_rainy, layer_clean = layers_[index]
    top, left = int(draws[0] * 1), int(draws[1] * (28 - width + 1))
    rain = (layer_rainy.astype(int) - layer_clean)[top:top + height, left:left + width] / 255.
    rain = rain[:, ::-1] if draws[2] < 0.5 else rain
    np.testing.assert_allclose(rainy, np.minimum(clean + rain, 1), atol=1e-6)


# ----------------------------------------------------------------------------- bad folders
def train_flags(root, layers, extra=()):
    return (['--is_training', 'True', '--train_dataset', 'Tiny', '--test_dataset', 'Tiny',
             '--batch_size', '1', '--patch_size', '16', '--seed', '0',
             '--data_path', os.path.join(root, 'train', '{}'),
             '--test_path', os.path.join(root, 'test', '{}'),
             '--checkpoint_dir', os.path.join(root, 'ckpt'),
             '--logs_dir', os.path.join(root, 'logs'),
             '--sample_dir', os.path.join(root, 'samples'), '--sample_every', '1000',
             '--rain_layers', layers] + list(extra))


def _unpaired(folder):
    os.remove(os.path.join(folder, 'norain-2.png'))
    return 'rain-2.png', 'partner'


def _size_mismatch(folder):
    image = cv2.imread(os.path.join(folder, 'norain-3.png'))
    cv2.imwrite(os.path.join(folder, 'norain-3.png'), image[:-2])
    return 'norain-3.png', 'same size'


def _darker(folder):
    rain, clean = (os.path.join(folder, n) for n in ('rain-1.png', 'norain-1.png'))
    first, second = cv2.imread(rain), cv2.imread(clean)
    cv2.imwrite(rain, second)          # swapped: the "rainy" image is the darker one
    cv2.imwrite(clean, first)
    return 'rain-1.png', 'darker than its clean image'


def _too_small(folder):
    for name in ('rain-2.png', 'norain-2.png'):
        path = os.path.join(folder, name)
        cv2.imwrite(path, cv2.imread(path)[:12])
    return 'rain-2.png', 'smaller than the training patch'


@pytest.mark.parametrize('spoil', [_unpaired, _size_mismatch, _darker, _too_small])
def test_bad_layer_folders_end_in_one_error_line(tmp_path, capsys, spoil):
    # The command lines' error path (errors.run, as main.py and synthesize.py report);
    # main.py itself in the slow test below.
    folder = str(tmp_path / 'layers')
    write_layers(folder, size=(24, 24))
    name, what = spoil(folder)
    code = errors.run(lambda: rainlayers.load_layers(folder, patch_size=16, verbose=False))
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: --rain_layers %s: ' % folder), err
    assert name in err[0] and what in err[0], err


def test_darker_tolerance_accepts_small_negative_noise(tmp_path):
    written = write_layers(str(tmp_path / 'layers'), clip=False)
    rainy, clean = written[0]
    noisy = rainy.astype(int)
    noisy[:2] -= 6            # 6/255 below, within the tolerance of 8 levels
    noisy[2:3] -= 30          # one row of 20: 5% of the samples, the limit itself
    noisy = np.clip(noisy, 0, 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / 'layers' / 'rain-1.png'), noisy)
    fraction, _ = rainlayers.darker_fraction(noisy / 255.0, clean / 255.0)
    assert fraction == pytest.approx(np.mean(clean.astype(int) - noisy > 8))
    assert fraction <= rainlayers.DARKER_FRACTION
    layers = rainlayers.load_layers(str(tmp_path / 'layers'), verbose=False)
    assert len(layers) == 3


def test_a_resume_compares_layers_by_content_and_old_settings_by_path(tmp_path):
    from checkpointing.settings_file import differing_settings
    here, there = str(tmp_path / 'layers'), str(tmp_path / 'elsewhere' / 'layers')
    written = write_layers(here)
    shutil.copytree(here, there)
    stored = rainlayers.load_layers(here, verbose=False).settings()
    moved = rainlayers.load_layers(there, verbose=False).settings()
    # The digest: SHA-256 of the decoded images (as cv2 reads them), by hand.
    expected = hashlib.sha256()
    for rainy, clean in written:
        for image in (rainy, clean):
            expected.update(('|u1 %s;' % (image.shape,)).encode('ascii'))
            expected.update(image.tobytes())
    assert stored['rain_layers_digest'] == moved['rain_layers_digest'] == expected.hexdigest()
    assert stored['rain_layers'] == os.path.abspath(here) != moved['rain_layers']
    # The same images elsewhere resume, for the check and for the guard's stored losses.
    rainlayers.check_resume(stored, rainlayers.load_layers(there, verbose=False), 'ckpt')
    assert differing_settings(stored, moved) == []
    # Settings written before the digest compare the folder's path.
    old = {k: v for k, v in stored.items() if k != 'rain_layers_digest'}
    rainlayers.check_resume(old, rainlayers.load_layers(here, verbose=False), 'ckpt')
    assert differing_settings(old, stored) == []
    assert differing_settings(old, moved) == ['rain_layers']
    with pytest.raises(rainlayers.DataError, match='was trained with --rain_layers %s, this '
                       'run passes %s;' % (here, there)):
        rainlayers.check_resume(old, rainlayers.load_layers(there, verbose=False), 'ckpt')
    # Other images at the same path, or no layers, are refused.
    rainy, _ = written[1]
    cv2.imwrite(os.path.join(there, 'rain-2.png'), np.maximum(rainy, 1))
    changed = rainlayers.load_layers(there, verbose=False)
    assert differing_settings(moved, changed.settings()) == ['rain_layers_digest']
    with pytest.raises(rainlayers.DataError, match='other images in --rain_layers %s ' % there):
        rainlayers.check_resume(moved, changed, 'ckpt')
    with pytest.raises(rainlayers.DataError, match='this run passes [(]none[)]'):
        rainlayers.check_resume(stored, None, 'ckpt')
    rainlayers.check_resume({'train_dataset': 'Rain100L'}, None, 'ckpt')


# ----------------------------------------------------------------------------- training
class RecordingBatcher(dataloader.TrainBatcher):
    """The real batcher; every batch served is kept (class-wide, in order)."""
    served = []

    def next_batch(self):
        batch = super().next_batch()
        RecordingBatcher.served.append(batch)
        return batch


@pytest.mark.slow
def test_training_with_layers_resumes_exactly_and_warm_starts(tmp_path, monkeypatch, capsys):
    import main
    import tensorflow.compat.v1 as tf
    root = str(tmp_path)
    write_pairs(os.path.join(root, 'train', 'Tiny'), 2, size=(24, 24), seed=0)
    write_pairs(os.path.join(root, 'test', 'Tiny'), 1, size=(24, 24), seed=1)
    write_layers(os.path.join(root, 'layers'), size=(24, 24))
    monkeypatch.setattr(dataloader, 'TrainBatcher', RecordingBatcher)
    layers = os.path.join(root, 'layers')
    RecordingBatcher.served = []
    assert main.main(train_flags(root, layers, ['--iterations', '2'])) == 0
    assert main.main(train_flags(root, layers, ['--iterations', '4'])) == 0
    resumed, RecordingBatcher.served = RecordingBatcher.served, []
    other = os.path.join(root, 'other')
    assert main.main(train_flags(root, layers, ['--iterations', '4', '--checkpoint_dir',
                                                other])) == 0
    straight = RecordingBatcher.served
    assert len(resumed) == len(straight) == 4
    for (rain_a, clean_a), (rain_b, clean_b) in zip(resumed, straight):
        np.testing.assert_array_equal(rain_a, rain_b)
        np.testing.assert_array_equal(clean_a, clean_b)
    folder = os.path.join(root, 'ckpt', 'ReMAEN_Tiny_1')
    with open(os.path.join(folder, 'remaen_settings.json')) as handle:
        stored = json.load(handle)
    assert stored['rain_layers'] == os.path.abspath(layers)
    assert stored['rain_layer_pairs'] == 3 and stored['train_pairs'] == 5
    # The same layers copied elsewhere resume the folder, its guard losses used.
    moved = os.path.join(root, 'moved', 'layers')
    shutil.copytree(layers, moved)
    capsys.readouterr()
    assert main.main(train_flags(root, moved, ['--iterations', '5'])) == 0
    out = capsys.readouterr()
    assert 'Divergence guard: judging from' in out.out and 'note: ignored' not in out.out
    # A resume with other layers (or none) is refused in one line; so is a bad layer folder.
    capsys.readouterr()
    other_layers = os.path.join(root, 'layers2')
    write_layers(other_layers, size=(24, 24), seed=9)
    assert main.main(train_flags(root, other_layers, ['--iterations', '6'])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'was trained with --rain_layers' in err[0], err
    _darker(other_layers)
    assert main.main(train_flags(root, other_layers, ['--checkpoint_dir', other])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: --rain_layers ') and (
        'darker than its clean image' in err[0]), err
    empty = os.path.join(root, 'empty')
    os.makedirs(empty)
    assert main.main(train_flags(root, layers, ['--init_weights', empty, '--checkpoint_dir',
                                                os.path.join(root, 'fresh')])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: --init_weights %s' % empty), err
    # Warm start: the newest weights (ReMAEN-5), fresh Adam (one step: beta1_power 0.9^2),
    # step 1.
    source = os.path.join(folder, 'ReMAEN-5')
    warm = os.path.join(root, 'warm')
    assert main.main(train_flags(root, layers, ['--iterations', '1', '--checkpoint_dir',
                                                warm, '--init_weights', folder])) == 0
    assert 'Warm start from %s' % source in capsys.readouterr().out
    prefix = os.path.join(warm, 'ReMAEN_Tiny_1', 'ReMAEN-1')
    assert int(tf.train.load_variable(prefix, 'global_step')) == 1
    assert tf.train.load_variable(prefix, 'beta1_power') == pytest.approx(0.81, rel=1e-6)
    for name, _ in tf.train.list_variables(source):
        if name.startswith('derainNet/') and 'Adam' not in name:
            step = np.abs(tf.train.load_variable(prefix, name)
                          - tf.train.load_variable(source, name))
            assert step.max() <= 1.01e-3, name     # one Adam step of lr 1e-3 at most
    with open(os.path.join(warm, 'ReMAEN_Tiny_1', 'remaen_settings.json')) as handle:
        assert json.load(handle)['init_weights'] == source


# ----------------------------------------------------------------------------- the audit
def scene(seed, size=(96, 128)):
    """A smooth random clean image in [0.1, 0.7], float BGR."""
    rng = np.random.default_rng(seed)
    small = rng.random((6, 8, 3)).astype(np.float32)
    return 0.1 + 0.6 * cv2.resize(small, size[::-1], interpolation=cv2.INTER_CUBIC).clip(0, 1)


def streaks(seed, size=(96, 128)):
    """A grey streak layer in [0, 0.8], [H, W, 1]."""
    rng = np.random.default_rng(seed)
    drops = (rng.random(size) < 0.02) * rng.uniform(0.4, 0.8, size)
    kernel = np.zeros((9, 9), np.float32)
    kernel[:, 4] = 1
    return np.clip(cv2.filter2D(drops.astype(np.float32), -1, kernel), 0, 0.8)[..., None]


def _data(label, pairs_images):
    pairs = [dataloader.Pair('%s-%d' % (label, i), '%s/r%d.png' % (label, i),
                             '%s/c%d.png' % (label, i), None)
             for i in range(len(pairs_images))]
    features = [backgrounds.rain_feature(r, c) for r, c in pairs_images]
    return {'label': label, 'scan': {'rain': (pairs, features)}}, features


def test_shared_rain_is_found_on_different_backgrounds_and_independent_rain_is_not():
    shared = streaks(1)
    made = [(np.minimum(scene(10 + i) + layer, 1), scene(10 + i))
            for i, layer in enumerate([shared, streaks(2), shared, streaks(3)])]
    data, features = _data('set', made)
    corr = backgrounds.rain_correlations(features)
    # The Pearson correlation of pairs 0 and 2 on their common unclipped pixels, by hand.
    (a, ma), (b, mb) = features[0], features[2]
    both = ma & mb
    assert corr[0, 2] == pytest.approx(np.corrcoef(a[both], b[both])[0, 1], abs=1e-4)
    found = audit_scan.shared_rain(data, [])
    assert [(f['a']['pairs'], f['b']['pairs']) for f in found] == [(['set-0'], ['set-2'])]
    assert found[0]['similarity'] >= backgrounds.SHARED_RAIN_THRESHOLD
    others = [corr[i, j] for i in range(4) for j in range(i + 1, 4) if (i, j) != (0, 2)]
    assert max(others) < backgrounds.SHARED_RAIN_THRESHOLD
    # A pair showing the same scene is the background check's, not a shared-rain finding.
    same = [{'a': {'pairs': ['set-0']}, 'b': {'pairs': ['set-2']}}]
    assert audit_scan.shared_rain(data, same) == []
    # Across sets: the shared layer on a third background is found, independent rain not.
    test, _ = _data('test', [(np.minimum(scene(30) + shared, 1), scene(30)),
                             (np.minimum(scene(31) + streaks(4), 1), scene(31))])
    across = audit_scan.shared_rain(data, [], test)
    assert sorted((f['a']['pairs'][0], f['b']['pairs'][0]) for f in across) == [
        ('set-0', 'test-0'), ('set-2', 'test-0')]
