"""reproduce.py on tiny generated datasets: training plan, report contents, not-run reasons."""
import json
import os
import re

import cv2
import numpy as np
import pytest

from conftest import SPEC, write_pairs
import checkpointing
import metrics
from reproduction import paper
import reproduce

SIZE = 32


def folder_flags(root):
    return ['--data_path', os.path.join(root, 'train', '{}'),
            '--test_path', os.path.join(root, 'test', '{}'),
            '--validation_path', os.path.join(root, 'val', '{}-val'),
            '--checkpoint_dir', os.path.join(root, 'ckpt'),
            '--test_dir', os.path.join(root, 'results'),
            '--out_dir', os.path.join(root, 'report')]


def test_paper_table_matches_spec():
    with open(SPEC) as handle:
        text = handle.read()
    table = text[text.index('## Paper table'):].split('\n\n')[0]
    rows = [line.strip('|').split('|') for line in table.splitlines()
            if line.startswith('| ') and '/' in line and 'Method' not in line]
    parsed = {cells[0].strip(): [tuple(float(v) for v in c.strip().split('/'))
                                 for c in cells[1:]] for cells in rows}
    assert list(parsed) == list(paper.PAPER_TABLE)
    for method, values in paper.PAPER_TABLE.items():
        assert [values[d] for d in paper.DATASETS] == parsed[method]
    for dataset, (train, test) in paper.DATASET_SIZES.items():
        assert '%s %d/%d' % (dataset, train, test) in text.replace('\n', ' ')


def test_flags_and_help():
    args = reproduce.parse_args(['--datasets', 'Rain100L', 'Foo', '--extra', 'Bar', 'Foo',
                                 '--rainy_half', 'Rain800=right', 'Rain1200=left',
                                 '--checkpoint', 'Rain100L=ckpt/x', '--train'])
    assert args.names == ['Rain100L', 'Foo', 'Bar']
    assert args.rainy_half == {'Rain800': 'right', 'Rain1200': 'left'}
    assert args.checkpoint == {'Rain100L': 'ckpt/x'} and args.train is True
    assert reproduce.parse_args([]).names == list(paper.DATASETS)
    assert reproduce.parse_args(['--train', 'False']).train is False
    for bad in (['--rainy_half', 'Rain800=up'], ['--rainy_half', 'Rain800'],
                ['--checkpoint', '=x']):
        with pytest.raises(SystemExit):
            reproduce.parse_args(bad)
    text = reproduce.build_parser().format_help()
    for needle in ('--rainy_half', 'Rain1200=left Rain800=right', '--train', '--checkpoint_dir',
                   '--test_path', '--data_path', '--batch_size', '--test_dir', '--iterations',
                   '--out_dir', 'REPRODUCTION.md'):
        assert needle in text


def test_dry_run_estimate_and_reasons(tmp_path, capsys):
    root = str(tmp_path)
    write_pairs(os.path.join(root, 'train', 'Rain100L'), 2,
                size=(SIZE, SIZE), seed=0, layout='padded')
    write_pairs(os.path.join(root, 'test', 'Rain100L'), 1,
                size=(SIZE, SIZE), seed=1, layout='padded')
    # A side-by-side Rain800 folder without --rainy_half: not usable, with the usual hint.
    os.makedirs(os.path.join(root, 'test', 'Rain800'))
    cv2.imwrite(os.path.join(root, 'test', 'Rain800', '1.png'), np.zeros((8, 16, 3), np.uint8))
    code = reproduce.main(['--datasets', 'Rain100L', 'Rain800', '--train', '--dry_run',
                           '--seconds_per_iteration', '2'] + folder_flags(root))
    out = capsys.readouterr().out
    assert code == 0
    assert 'Rain100L' in out and '40000 iterations' in out and '~22.2 h' in out
    assert '--rainy_half Rain800=right' in out
    assert not os.path.exists(os.path.join(root, 'ckpt'))
    assert not os.path.exists(os.path.join(root, 'report'))


@pytest.fixture(scope='module')
def reproduced(tmp_path_factory):
    """--train on Rain100L (1 iteration), Tiny2 sharing its checkpoint, two not-run rows."""
    root = str(tmp_path_factory.mktemp('repro'))
    write_pairs(os.path.join(root, 'train', 'Rain100L'), 3,
                size=(SIZE, SIZE), seed=0, layout='padded')
    write_pairs(os.path.join(root, 'test', 'Rain100L'), 2,
                size=(SIZE, SIZE), seed=1, layout='padded')
    write_pairs(os.path.join(root, 'test', 'Tiny2'), 3,
                size=(40, 40), seed=2, layout='padded')
    write_pairs(os.path.join(root, 'test', 'Rain100H'), 1,
                size=(SIZE, SIZE), seed=3, layout='padded')  # no train data, no ckpt
    write_pairs(os.path.join(root, 'val', 'Rain1400-val'), 2,
                size=(SIZE, SIZE), seed=4, layout='padded')  # validation pairs, no test data
    write_pairs(os.path.join(root, 'val', 'Rain100H-val'), 1,
                size=(SIZE, SIZE), seed=5, layout='padded')  # test data exists: not used
    shared = os.path.join(root, 'ckpt', 'ReMAEN_Rain100L_1')
    cwd = os.getcwd()
    os.chdir(root)  # logs/ and samples/ of the training run land here
    try:
        code = reproduce.main(['--datasets', 'Rain100L', 'Rain100H', 'Rain800', 'Rain1400',
                               '--extra', 'Tiny2', '--train', '--iterations', '1',
                               '--batch_size', '1', '--patch_size', '24', '--seed', '0',
                               '--seconds_per_iteration', '0.25',
                               '--checkpoint', 'Tiny2=' + shared, 'Rain1400=' + shared]
                              + folder_flags(root))
    finally:
        os.chdir(cwd)
    with open(os.path.join(root, 'report', 'REPRODUCTION.json')) as handle:
        report = json.load(handle)
    with open(os.path.join(root, 'report', 'REPRODUCTION.md')) as handle:
        markdown = handle.read()
    return root, code, report, markdown


def test_report_rows_and_reasons(reproduced):
    root, code, report, _ = reproduced
    assert code == 0
    rows = {r['dataset']: r for r in report['datasets']}
    assert list(rows) == ['Rain100L', 'Rain100H', 'Rain800', 'Rain1400', 'Tiny2']
    # No test data but validation pairs: tested on them and labelled; test data wins.
    assert rows['Rain1400']['status'] == 'ok' and rows['Rain1400']['test_set'] == 'validation'
    assert rows['Rain1400']['test_folder'] == os.path.join(root, 'val', 'Rain1400-val')
    assert rows['Rain1400']['test_pairs'] == 2
    assert rows['Rain100H']['test_set'] == 'test' and rows['Rain100L']['test_set'] == 'test'
    assert rows['Rain100L']['status'] == 'ok' and rows['Tiny2']['status'] == 'ok'
    assert rows['Rain100L']['checkpoint'].endswith(os.path.join('ReMAEN_Rain100L_1',
                                                                'ReMAEN-1'))
    assert rows['Rain100L']['checkpoint_step'] == 1
    # The run's schedule from its stored settings (default --lr and --lr_decay_step).
    assert rows['Rain100L']['training'] == {'iterations': 1,
                                            'schedule': checkpointing.schedule_text(1e-3, 30000, 1)}
    assert rows['Rain100L']['training']['schedule'] == 'lr 1e-3 throughout'
    assert rows['Tiny2']['checkpoint'] == rows['Rain100L']['checkpoint']
    assert rows['Rain100L']['test_pairs'] == 2 and rows['Tiny2']['test_pairs'] == 3
    assert rows['Rain100L']['paper_test_pairs'] == 100
    assert rows['Rain100L']['train_pairs'] == 3
    assert rows['Tiny2']['paper'] is None and rows['Tiny2']['difference'] is None
    assert rows['Rain100H']['status'] == 'not run'
    assert rows['Rain100H']['reason'].startswith(
        'no checkpoint at %s' % os.path.join(root, 'ckpt', 'ReMAEN_Rain100H_1'))
    assert 'no training data at %s' % os.path.join(root, 'train', 'Rain100H') \
        in rows['Rain100H']['reason']
    assert rows['Rain800']['reason'] == 'no test data at %s' % os.path.join(root, 'test',
                                                                            'Rain800')
    training = report['training']  # the estimate printed before training
    assert training['seconds_per_iteration'] == 0.25
    assert training['datasets'] == {'Rain100L': {'from_step': 0, 'iterations': 1,
                                                 'seconds': 0.25}}
    assert report['paper_table']['ReMAEN (ICME\'19)']['Rain1400'] == {'psnr': 32.31,
                                                                      'ssim': 0.916}


def test_our_numbers_are_the_results_json_metrics(reproduced):
    root, _, report, _ = reproduced
    for row in report['datasets']:
        if row['status'] != 'ok':
            continue
        with open(os.path.join(root, row['results']) if not os.path.isabs(row['results'])
                  else row['results']) as handle:
            results = json.load(handle)
        assert results['count'] == row['test_pairs'] == len(results['images'])
        for key in ('psnr', 'ssim', 'psnr_y', 'ssim_y'):
            mean = float(np.mean([image[key] for image in results['images']]))
            assert row['ours'][key] == pytest.approx(mean, abs=1e-9)
        for image in results['images']:
            index = int(image['name'].split('-')[1])
            clean = cv2.imread(os.path.join(row['test_folder'], 'norain-%03d.png' % index)
                               ).astype(np.float32) / 255
            output = cv2.imread(image['output']).astype(np.float32) / 255
            again = metrics.evaluate(output, clean)
            # Y protocol: on the uint8 image, i.e. exactly the saved PNG. Paper protocol: on
            # the float output (SPEC), within 8-bit rounding of the saved PNG's value.
            for key in ('psnr_y', 'ssim_y'):
                assert again[key] == pytest.approx(image[key], abs=1e-6)
            assert again['psnr'] == pytest.approx(image['psnr'], abs=0.05)
            assert again['ssim'] == pytest.approx(image['ssim'], abs=2e-3)
        if row['paper']:
            assert row['difference']['psnr'] == pytest.approx(row['ours']['psnr']
                                                              - row['paper']['psnr'])


def test_markdown_report(reproduced):
    _, _, report, markdown = reproduced
    rows = {r['dataset']: r for r in report['datasets']}
    ours = rows['Rain100L']['ours']
    lines = markdown.splitlines()
    paper_line = [line for line in lines if line.startswith('| Rain100L | paper |')]
    y_line = [line for line in lines if line.startswith('| Rain100L | Y |')]
    assert len(paper_line) == 1 and len(y_line) == 1
    assert '37.80/0.982' in paper_line[0]
    assert '%.2f/%.4f' % (ours['psnr'], ours['ssim']) in paper_line[0]
    assert '%+.2f' % (ours['psnr'] - 37.80) in paper_line[0]
    assert '%.2f/%.4f' % (ours['psnr_y'], ours['ssim_y']) in y_line[0]
    assert 'no paper value' in y_line[0]
    for line in paper_line + y_line:
        assert '2 (paper 100) ⚠' in line and 'ReMAEN-1` (1 iterations; lr 1e-3 throughout)' in line
        assert re.search(r'\| \d{4}-\d{2}-\d{2} \|$', line)
    assert re.search(r'\| Rain800 \| — \| 26\.86/0\.854 \| not run: no test data at ', markdown)
    assert re.search(r'\| Rain100H \| — \| 28\.97/0\.884 \| not run: no checkpoint at ',
                     markdown)
    val = rows['Rain1400']['ours']
    val_line = [line for line in lines if line.startswith('| Rain1400 | paper |')]
    sizes = paper.DATASET_SIZES['Rain1400']
    assert len(val_line) == 1 and ('2 validation (paper %d) ⚠' % sizes[1]) in val_line[0]
    assert '32.31/0.916' in val_line[0] and '%.2f/%.4f' % (val['psnr'], val['ssim']) in val_line[0]
    assert '**%.2f/%.4f** (validation)' % (val['psnr'], val['ssim']) in markdown
    assert '**Rain1400 on validation pairs**' in markdown and 'Rain1400-val' in markdown
    tiny = [line for line in lines if line.startswith('| Tiny2 |')]
    assert len(tiny) == 2 and all('3 |' in line for line in tiny)
    assert ('| JORDER (CVPR\'17) | 36.11/0.970 | 22.15/0.674 | 22.24/0.776 | 27.55/0.853 | — |'
            in markdown)
    assert 'no counterpart in the paper' in markdown
    assert '1,254' in markdown and 'RainTrainH' in markdown
