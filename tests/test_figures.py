"""figures.py: per-stage training curves, the edge-loss figure and the CLI's user errors."""
import csv
import os

import cv2
import numpy as np
import pytest

import figures

STEPS = (100, 200, 300, 400)
SIZE = 16


def _curve_rows():
    """csv rows of 3 stages x 4 steps; step 200 is logged twice (a resumed run), the second
    time with other values (the ones that count)."""
    rows = []
    for step in STEPS:
        for stage in (1, 2, 3):
            psnr = 20.0 + stage + step / 100.0
            rows.append([step, stage, psnr, 0.5 + stage / 10.0 + step / 1e4, psnr + 1.0,
                         0.6 + step / 1e4, 12.5])
    for stage in (1, 2, 3):  # the resumed run evaluates step 200 again
        rows.append([200, stage, 40.0 + stage, 0.9 + stage / 100.0, 41.0 + stage, 0.95, 3.0])
    return rows


def _expected(rows, column):
    """stage -> (steps, values) of a csv column, the last occurrence of each step winning."""
    index = figures.CURVE_COLUMNS.index(column)
    latest = {}
    for row in rows:
        latest[(row[1], row[0])] = row[index]
    return {stage: ([s for s in STEPS], [latest[(stage, s)] for s in STEPS])
            for stage in (1, 2, 3)}


def _write_curve(folder):
    os.makedirs(folder, exist_ok=True)
    rows = _curve_rows()
    with open(os.path.join(folder, 'curve.csv'), 'w', newline='') as handle:
        writer = csv.writer(handle)
        writer.writerow(figures.CURVE_COLUMNS)
        writer.writerows(rows)
    return rows


def _check_png(path):
    image = cv2.imread(path)
    assert image is not None, path
    assert image.shape[1] >= 300 and image.shape[0] >= 200


def test_read_curve_keeps_the_last_occurrence(tmp_path):
    rows = _write_curve(str(tmp_path))
    curve = figures.read_curve(str(tmp_path / 'curve.csv'))
    assert sorted(curve) == [1, 2, 3]
    for stage, (steps, psnrs) in _expected(rows, 'psnr').items():
        assert [r[0] for r in curve[stage]] == steps
        assert [r[1] for r in curve[stage]] == pytest.approx(psnrs)
    assert curve[2][1] == pytest.approx((200, 42.0, 0.92, 43.0, 0.95))


def test_curves_one_line_per_stage(tmp_path, capsys):
    run = str(tmp_path / 'logs' / 'ReMAEN_Demo_4')
    rows = _write_curve(run)
    out = str(tmp_path / 'figs')
    assert figures.main(['curves', run, '--out', out]) == 0
    for name in ('PSNR', 'SSIM'):
        _check_png(os.path.join(out, name + '.png'))
    assert os.path.join(out, 'PSNR.png') in capsys.readouterr().out

    curve = figures.read_curve(os.path.join(run, 'curve.csv'))
    for protocol, columns in (('paper', ('psnr', 'ssim')), ('y', ('psnr_y', 'ssim_y'))):
        plots = figures.plot_curves(curve, str(tmp_path / protocol), 'ReMAEN_Demo_4', protocol)
        for name, column in zip(('PSNR', 'SSIM'), columns):
            lines = plots.axes[name].get_lines()
            assert [line.get_label() for line in lines] == ['stage 1', 'stage 2', 'stage 3']
            for stage, (steps, values) in _expected(rows, column).items():
                line = lines[stage - 1]
                np.testing.assert_array_equal(line.get_xdata(), steps)
                np.testing.assert_allclose(line.get_ydata(), values)
            assert 'ReMAEN_Demo_4' in plots.axes[name].get_title()


def test_curves_of_a_logs_root_and_of_the_csv(tmp_path):
    logs = tmp_path / 'logs'
    for run in ('run_a', 'run_b'):
        _write_curve(str(logs / run))
    (logs / 'empty_run').mkdir()
    out = str(tmp_path / 'figs')
    assert figures.main(['curves', str(logs), '--out', out, '--protocol', 'y']) == 0
    for run in ('run_a', 'run_b'):
        _check_png(os.path.join(out, run, 'SSIM.png'))
    assert not os.path.exists(os.path.join(out, 'empty_run'))
    single = str(tmp_path / 'single')
    assert figures.main(['curves', str(logs / 'run_a' / 'curve.csv'), '--out', single]) == 0
    _check_png(os.path.join(single, 'PSNR.png'))


def _save_checkpoints(random_folder, zeros_folder):
    """Two weights-only checkpoints of the paper's network, from one graph: the
    initializers' weights with small random biases, and all zeros (output == input)."""
    import tensorflow.compat.v1 as tf
    import model
    from conftest import fast_session_config, randomize_biases
    tf.disable_v2_behavior()
    with tf.Graph().as_default():
        result = model.remaen(tf.placeholder(tf.float32, [1, None, None, 3]), model.ModelConfig())
        assert result[0] is not None  # (output, end_points) or (output, residual, end_points)
        variables = model.model_variables()
        saver = tf.train.Saver(variables)
        with tf.Session(config=fast_session_config()) as sess:
            sess.run(tf.variables_initializer(variables))
            randomize_biases(sess, seed=0)
            saver.save(sess, os.path.join(random_folder, 'ReMAEN'), write_meta_graph=False)
            sess.run([v.initializer for v in variables],
                     {v.initial_value: np.zeros(v.get_shape().as_list(), np.float32)
                      for v in variables})
            saver.save(sess, os.path.join(zeros_folder, 'ReMAEN'), write_meta_graph=False)
    return random_folder, zeros_folder


def _pair(folder):
    """A 16x16 rainy/clean pair written as PNGs; returns paths and the images as read."""
    import dataloader
    rng = np.random.default_rng(1)
    clean = rng.integers(40, 200, (SIZE, SIZE, 3), dtype=np.uint8)
    rain = clean.copy()
    rain[:, 5] = 250  # rain streaks
    rain[:, 11] = 240
    paths = []
    for name, image in (('rain.png', rain), ('clean.png', clean)):
        paths.append(os.path.join(folder, name))
        assert cv2.imwrite(paths[-1], image)
    return paths, [dataloader.read_image(p) for p in paths]


def test_edge_figure_shows_the_scores(tmp_path, capsys, monkeypatch):
    import metrics
    trained, zeros = _save_checkpoints(str(tmp_path / 'with'), str(tmp_path / 'without'))
    (rain_path, clean_path), (rain, clean) = _pair(str(tmp_path))
    outputs = {}
    derain = figures._derain

    def recording_derain(checkpoint, image):
        outputs[checkpoint] = derain(checkpoint, image)
        return outputs[checkpoint]

    monkeypatch.setattr(figures, '_derain', recording_derain)
    out = str(tmp_path / 'figs' / 'edge.png')
    assert figures.main(['edge', '--with', trained, '--without', zeros, '--image', rain_path,
                         '--clean', clean_path, '--out', out]) == 0
    _check_png(out)
    printed = capsys.readouterr().out
    expected = metrics.evaluate(rain, clean)
    assert out in printed
    assert 'without edge loss' in printed and '%6.2f dB' % expected['psnr'] in printed
    np.testing.assert_array_equal(outputs[zeros], rain)  # zero weights: output == input
    assert not np.array_equal(outputs[trained], rain)

    # The numbers under the panels (plot_edge returns what it drew; no TF from here on).
    path, panels = figures.plot_edge(rain, outputs[zeros], outputs[trained], clean,
                                     str(tmp_path / 'again.png'))
    assert [p.label for p in panels] == ['rainy', 'without edge loss', 'with edge loss',
                                         'clean']
    assert panels[1].scores['psnr'] == expected['psnr']
    assert panels[0].scores == expected
    assert '%.2f dB' % expected['psnr'] in panels[1].caption
    assert panels[2].scores['psnr'] != expected['psnr']
    assert panels[3].scores is None

    no_clean = str(tmp_path / 'figs' / 'edge3.png')
    _, three = figures.plot_edge(rain, outputs[zeros], outputs[trained], None, no_clean)
    assert len(three) == 3 and all(p.scores is None and not p.caption for p in three)
    _check_png(no_clean)


@pytest.mark.parametrize('argv', [
    ['curves', '{tmp}/missing', '--out', '{tmp}/o'],
    ['edge', '--with', '{tmp}', '--without', '{tmp}', '--image', '{tmp}/missing.png',
     '--out', '{tmp}/e.png'],
])
def test_user_errors_are_one_line(tmp_path, capsys, argv):
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert figures.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: ') and 'missing' in err[0]


def test_bad_csv_and_missing_checkpoint(tmp_path, capsys):
    (tmp_path / 'curve.csv').write_text('step,stage,psnr,ssim,psnr_y,ssim_y,seconds\n'
                                        '100,1,abc,0.5,20,0.5,1\n')
    assert figures.main(['curves', str(tmp_path), '--out', str(tmp_path / 'o')]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'line 2' in err[0] and "'abc'" in err[0]
    (_, clean_path), _ = _pair(str(tmp_path))
    assert figures.main(['edge', '--with', str(tmp_path / 'nothing'), '--without',
                         str(tmp_path / 'nothing'), '--image', clean_path,
                         '--out', str(tmp_path / 'e.png')]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: ') and 'checkpoint' in err[0]
