"""--eval_every: the training curve equals separate test runs; per-stage metrics of testing."""
import json
import os

import numpy as np
import pytest

from conftest import write_pairs
from training import evaluation
import main


SIZE = 24


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """4 iterations with --eval_every 2 (curve rows at steps 0, 2 and 4), checkpoints kept."""
    root = str(tmp_path_factory.mktemp('curves'))
    write_pairs(os.path.join(root, 'train', 'Tiny'), 2, size=(SIZE, SIZE), seed=0)
    write_pairs(os.path.join(root, 'test', 'Tiny'), 2, size=(SIZE, 32), seed=1)
    common = ['--train_dataset', 'Tiny', '--test_dataset', 'Tiny', '--batch_size', '1',
              '--data_path', os.path.join(root, 'train', '{}'),
              '--test_path', os.path.join(root, 'test', '{}'),
              '--checkpoint_dir', os.path.join(root, 'ckpt'),
              '--logs_dir', os.path.join(root, 'logs'),
              '--sample_dir', os.path.join(root, 'samples'),
              '--test_dir', os.path.join(root, 'results')]
    assert main.main(['--is_training', 'True', '--iterations', '4', '--patch_size', '16',
                      '--seed', '0', '--eval_every', '2', '--save_every', '2',
                      '--keep_checkpoints', '3'] + common) == 0
    return root, common


def test_curve_equals_a_separate_test_run_of_that_checkpoint(trained):
    root, common = trained
    rows = evaluation.read_curve(os.path.join(root, 'logs', 'ReMAEN_Tiny_1', 'curve.csv'))
    assert sorted({r['step'] for r in rows}) == [0, 2, 4]
    assert all(len([r for r in rows if r['step'] == s]) == 3 for s in (0, 2, 4))
    for step in (2, 4):
        prefix = os.path.join(root, 'ckpt', 'ReMAEN_Tiny_1', 'ReMAEN-%d' % step)
        out = os.path.join(root, 'results_%d' % step)
        assert main.main(['--is_testing', 'True', '--checkpoint', prefix, '--test_dir', out]
                         + common[:-2]) == 0
        with open(os.path.join(out, 'Tiny', 'results.json')) as handle:
            mean = json.load(handle)['mean']
        for row in (r for r in rows if r['step'] == step):
            stage = mean['stages'][row['stage'] - 1]
            for key in ('psnr', 'psnr_y'):
                assert abs(row[key] - stage[key]) < 0.01, (step, row['stage'], key)
            for key in ('ssim', 'ssim_y'):
                assert abs(row[key] - stage[key]) < 1e-4, (step, row['stage'], key)


def test_testing_reports_every_stage(trained):
    root, common = trained
    out = os.path.join(root, 'results_stages')
    assert main.main(['--is_testing', 'True', '--test_dir', out] + common[:-2]) == 0
    with open(os.path.join(out, 'Tiny', 'results.json')) as handle:
        results = json.load(handle)
    for image in results['images']:
        assert len(image['stages']) == 3
        assert image['stages'][-1] == {k: image[k] for k in ('psnr', 'ssim', 'psnr_y',
                                                             'ssim_y')}
        assert os.path.isfile(image['compare'])
    assert len(results['mean']['stages']) == 3
    assert os.path.isfile(os.path.join(out, 'Tiny', 'index.html'))


def test_batch_ssim_summary_is_the_paper_protocol_mean():
    """metrics/ssim of a training batch equals scikit-image's SSIM, averaged over the batch,
    on low-contrast crops where SSIM's variances are small differences of large means."""
    from skimage.metrics import structural_similarity
    rng = np.random.default_rng(3)
    clean = np.clip(0.6 + 0.02 * rng.standard_normal((3, 24, 20, 3)), 0, 1)
    output = np.clip(clean + 0.01 * rng.standard_normal(clean.shape), 0, 1)
    output, clean = output.astype(np.float32), clean.astype(np.float32)
    summary = evaluation.batch_ssim_summary(output, clean)
    (value,) = summary.value
    assert value.tag == 'metrics/ssim'
    expected = np.mean([structural_similarity(
        np.float64(o), np.float64(c), channel_axis=-1, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=1.0) for o, c in zip(output, clean)])
    assert 0.2 < expected < 0.95
    assert value.simple_value == pytest.approx(expected, abs=1e-6)
    # Crops smaller than the 11x11 window: no summary rather than an error.
    assert evaluation.batch_ssim_summary(output[:, :10], clean[:, :10]) is None


def test_curve_values_also_go_to_tensorboard(trained):
    """eval/stage<s>/<metric> in the events file equal the curve.csv rows, at the same steps."""
    import glob
    from console import quiet
    tf = quiet.import_tf()
    root, _ = trained
    run_dir = os.path.join(root, 'logs', 'ReMAEN_Tiny_1')
    logged = {}
    for path in glob.glob(os.path.join(run_dir, 'events.*')):
        for event in tf.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag.startswith('eval/'):
                    logged[(event.step, value.tag)] = value.simple_value
    rows = evaluation.read_curve(os.path.join(run_dir, 'curve.csv'))
    expected = {(r['step'], 'eval/stage%d/%s' % (r['stage'], key)): r[key]
                for r in rows for key in ('psnr', 'ssim', 'psnr_y', 'ssim_y')}
    assert sorted(logged) == sorted(expected)
    for key, value in expected.items():
        assert logged[key] == pytest.approx(value, abs=1e-4), key
