"""Tests of tools/colour_offset.py on a results folder written here: offsets and PSNRs
against an independent numpy computation on the same 8-bit files. No TensorFlow."""
import json
import os
import sys

import cv2
import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, 'tools'))

import colour_offset  # noqa: E402

SHIFTS = {'rain-1': (6, -3, 2), 'rain-2': (-4, 0, 5)}     # output names: 8-bit levels, BGR


def write_results(tmp_path):
    """A canonical test set of two pairs and a results folder whose outputs are the clean
    images shifted by SHIFTS plus noise; returns (results folder, {name: (output, clean)})."""
    rng = np.random.default_rng(0)
    data = tmp_path / 'set'
    out = tmp_path / 'results'
    data.mkdir()
    out.mkdir()
    rows, arrays = [], {}
    for name, shift in SHIFTS.items():
        clean = rng.integers(20, 236, (24, 31, 3)).astype(np.int32)
        output = np.clip(clean + np.array(shift) + rng.integers(-3, 4, clean.shape), 0, 255)
        cv2.imwrite(str(data / ('no%s.png' % name)), clean.astype(np.uint8))
        cv2.imwrite(str(data / ('%s.png' % name)), clean.astype(np.uint8))
        cv2.imwrite(str(out / ('%s.png' % name)), output.astype(np.uint8))
        rows.append({'name': name, 'output': str(out / ('%s.png' % name))})
        arrays[name] = (output / 255.0, clean / 255.0)
    with open(out / 'results.json', 'w') as handle:
        json.dump({'source': str(data), 'images': rows}, handle)
    return str(out), arrays


def numpy_psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((a - b) ** 2))


def test_offsets_and_psnr_equal_numpy(tmp_path, capsys):
    folder, arrays = write_results(tmp_path)
    rows = {row['name']: row for row in colour_offset.measure_folder(folder)}
    assert sorted(rows) == sorted(SHIFTS)
    for name, (output, clean) in arrays.items():
        offset = (output - clean).reshape(-1, 3).mean(axis=0)
        np.testing.assert_allclose(rows[name]['offset'], offset, atol=1e-6)
        np.testing.assert_allclose(rows[name]['offset'] * 255, SHIFTS[name], atol=0.3)
        assert rows[name]['psnr'] == pytest.approx(numpy_psnr(output, clean), abs=1e-4)
        assert rows[name]['psnr_without_offset'] == pytest.approx(
            numpy_psnr(output - offset, clean), abs=1e-4)
        assert rows[name]['psnr_without_offset'] > rows[name]['psnr']
    mean = colour_offset.summarise(list(rows.values()))
    np.testing.assert_allclose(mean['offset'], np.mean(list(SHIFTS.values()), axis=0), atol=0.3)
    assert mean['gain'] == pytest.approx(
        np.mean([rows[n]['psnr_without_offset'] - rows[n]['psnr'] for n in rows]), abs=1e-9)
    assert colour_offset.main([folder, '--per_image']) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 1 + len(SHIFTS) + 1              # header, images, folder mean
    assert printed[-1].split()[-1] == '%.2f' % mean['gain']


def test_not_a_results_folder_is_one_error_line(tmp_path, capsys):
    assert colour_offset.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: ') and str(tmp_path) in err[0]
    assert 'results.json' in err[0]
