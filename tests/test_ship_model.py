"""Tests of tools/ship_model.py: the shipped model is replaced only by a complete new one.

The shipped folder is redirected to a temporary one (``checkpointing.shipped_model_folder``);
the source is the shipped heavy model. The demo measurement itself is tests/test_demo.py's.
"""
import errno
import json
import os
import sys

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, 'tools'))

import checkpointing  # noqa: E402
import inference  # noqa: E402
from machine import resources  # noqa: E402
import ship_model  # noqa: E402

SOURCE = os.path.join(ROOT, 'checkpoints', 'ReMAEN_heavy')
FLAGS = ['--training_data', 'test', '--wall_hours', '1.5']


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A stand-in shipped folder holding an old model (two files); returns (folder, bytes)."""
    folder = tmp_path / 'ReMAEN_light'
    folder.mkdir()
    (folder / 'model_card.json').write_text('{"name": "old"}')
    (folder / 'ReMAEN.index').write_bytes(b'old weights')
    monkeypatch.setattr(checkpointing, 'shipped_model_folder', lambda name: str(folder))
    return folder, {p.name: p.read_bytes() for p in folder.iterdir()}


def contents(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.parametrize('bad', [['/no/such/checkpoint', '--demo', 'Demo'],
                                 [SOURCE, '--demo', 'NoSuchDemo'],
                                 [SOURCE, '--demo', 'Demo', '--photo', '/no/photo.jpg']])
def test_bad_input_is_one_error_line_and_replaces_nothing(bad, shipped, capsys):
    folder, before = shipped
    assert ship_model.main(['light'] + bad + FLAGS) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: ')
    assert contents(folder) == before
    assert sorted(os.listdir(folder.parent)) == ['ReMAEN_light']


def test_fault_while_measuring_keeps_the_old_model(shipped, monkeypatch, capsys):
    folder, before = shipped

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, 'No space left on device', str(folder))
    monkeypatch.setattr(inference, 'derain_pairs', full_disk)
    assert ship_model.main(['light', SOURCE, '--demo', 'Demo'] + FLAGS) == 2
    assert capsys.readouterr().err.startswith('error: ')
    assert contents(folder) == before
    assert sorted(os.listdir(folder.parent)) == ['ReMAEN_light']      # no .new left


def test_ship_replaces_the_folder_with_the_exported_weights_and_card(shipped, monkeypatch):
    folder, _ = shipped
    mean = {k: 30.0 + i for i, k in enumerate(inference.METRIC_KEYS)}
    fake = {'mean': dict(mean, input=dict(mean), stages=[dict(mean)])}
    monkeypatch.setattr(inference, 'derain_pairs', lambda *args, **kwargs: fake)
    assert ship_model.main(['light', SOURCE, '--demo', 'Demo'] + FLAGS) == 0
    assert sorted(os.listdir(folder.parent)) == ['ReMAEN_light']
    assert 'old weights' not in str(contents(folder).get('ReMAEN.index'))
    card = json.loads((folder / 'model_card.json').read_text())
    assert card['name'] == 'light' and card['wall_hours'] == 1.5
    assert card['cpu'] == '%s, %d cores' % resources.machine_description()
    stored = checkpointing.load_settings(SOURCE)
    step = checkpointing.stored_step(checkpointing.find(SOURCE))
    assert card['schedule'] == checkpointing.schedule_text(stored['lr'], stored['lr_decay_step'],
                                                           step)
    assert ship_model.main(['light', SOURCE, '--demo', 'Demo', '--cpu', 'AMD EPYC and Intel '
                            'Xeon, 2 cores', '--schedule', 'lr 2e-4'] + FLAGS) == 0
    card = json.loads((folder / 'model_card.json').read_text())
    assert card['cpu'] == 'AMD EPYC and Intel Xeon, 2 cores' and card['schedule'] == 'lr 2e-4'
    assert card['demo']['psnr'] == mean['psnr'] and card['demo_set'] == 'Demo'
    assert card['source'] == os.path.relpath(checkpointing.find(SOURCE), ROOT)
    exported = tf.train.load_checkpoint(checkpointing.find(str(folder)))
    original = tf.train.load_checkpoint(checkpointing.find(SOURCE))
    names = sorted(exported.get_variable_to_shape_map())
    assert len(names) == 138 and names == sorted(original.get_variable_to_shape_map())
    for name in names:
        np.testing.assert_array_equal(exported.get_tensor(name), original.get_tensor(name))


@pytest.mark.parametrize('lr, decay_step, iterations', [
    (1e-3, 9534, 9535), (1e-3, 9534, 15000), (1e-3, 30000, 9600), (1e-3, 30000, 30000),
    (1e-3, 30000, 40000), (2.5e-4, 12000, 20000), (1e-4, 100, None)])
def test_schedule_text_says_each_phase_and_the_papers_when_it_differs(lr, decay_step,
                                                                     iterations):
    text = checkpointing.schedule_text(lr, decay_step, iterations)
    phases = text.split(' (paper')[0]
    written = [float(word.rstrip(',')) for word in phases.replace('lr ', '').split()
               if 'e-' in word]
    # Each rate written is the one the graph used in that phase (model.learning_rate_schedule).
    decayed = iterations is None or iterations > decay_step
    assert written == ([lr, lr * 0.1] if decayed else [lr])
    assert ('to {:,}'.format(decay_step) in phases) == decayed
    assert ('throughout' in phases) != decayed
    assert ('(paper: to 30,000)' in text) == (decay_step != 30000)
