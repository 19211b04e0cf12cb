"""The shipped models and demo data, and the README's first command."""
import json
import os
import re
import subprocess
import sys

import pytest
import tensorflow.compat.v1 as tf

from conftest import ROOT, read_manifest
import checkpointing
import dataloader

SHIPPED = {name: os.path.join(ROOT, 'checkpoints', 'ReMAEN_' + name) for name in ('light', 'heavy')}
DEMO_CHECKPOINT = SHIPPED['light']
README = os.path.join(ROOT, 'README.md')


def readme_demo_command():
    """The README's first command, without its ``pip install ... &&`` part."""
    with open(README) as handle:
        text = handle.read()
    match = re.search(r'pip install -r requirements\.txt && (python main\.py [^\n`]+)', text)
    assert match, 'README has no install-and-run line'
    return match.group(1).split()


def test_shipped_data_layouts():
    pairs, layout = dataloader.find_pairs(os.path.join(ROOT, 'data', 'test', 'Demo'),
                                          verbose=False)
    assert [p.name for p in pairs] == ['51', '52', '53', '54', '55'] and 'input' in layout
    photos, _ = dataloader.find_pairs(os.path.join(ROOT, 'data', 'real'),
                                      allow_missing_gt=True, verbose=False)
    assert len(photos) == 6 and all(p.clean_path is None for p in photos)


@pytest.mark.parametrize('name', sorted(SHIPPED))
def test_shipped_checkpoint_is_weights_only_default_model(name):
    DEMO_CHECKPOINT = SHIPPED[name]
    prefix = checkpointing.find(DEMO_CHECKPOINT)
    assert prefix is not None
    stored = {name: tuple(shape) for name, shape in tf.train.list_variables(prefix)}
    assert stored == read_manifest()          # no Adam slots, no global_step
    size = sum(os.path.getsize(os.path.join(DEMO_CHECKPOINT, f))
               for f in os.listdir(DEMO_CHECKPOINT))
    assert size < 4e6
    settings = checkpointing.load_settings(DEMO_CHECKPOINT)
    assert settings['model'] == {'stages': 3, 'channels': 32,
                                 'dilations': [1, 2, 3], 'shared_attention': True,
                                 'skip_connections': True}


@pytest.mark.slow   # the README's command as a whole CLI run (5 images, 321x481)
def test_readme_demo_command_derains(tmp_path):
    command = readme_demo_command()
    assert command[:2] == ['python', 'main.py'] and '--is_testing' in command
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'main.py')] + command[2:]
        + ['--test_dir', str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(str(tmp_path), 'Demo', 'results.json')) as handle:
        results = json.load(handle)
    assert results['count'] == 5
    mean = results['mean']
    assert mean['ssim'] > mean['input']['ssim']
    card = model_card('light')['demo']     # measured when the light model was shipped
    for key in ('psnr', 'psnr_y'):
        assert abs(mean[key] - card[key]) < 0.05, (key, mean[key], card[key])
        # The gain over the rainy input measured when the model was shipped, not a loose bound.
        assert mean[key] - mean['input'][key] > card[key] - card['input'][key] - 0.05
    assert abs(mean['ssim'] - card['ssim']) < 1e-3


def test_light_card_records_the_rain100l_campaign():
    """The shipped light model comes from the paper's recipe on RainTrainL (issue 24): its
    card records the source checkpoint and step (for a weight average, the newest of the run's
    checkpoints it lists), batch 32 of 64x64, the data and the hours."""
    card = model_card('light')
    source = card['source'].replace('\\', '/')
    assert source.startswith('checkpoints/ReMAEN_Rain100L_32/ReMAEN-'), source
    assert card['iterations'] == int(source.rsplit('-', 1)[1]) > 0
    averaged = card.get('averaged_checkpoints') or [card['source']]       # a weight average
    assert card['source'] in averaged and all(
        a.replace('\\', '/').startswith('checkpoints/ReMAEN_Rain100L_32/ReMAEN-') and
        0 < int(a.rsplit('-', 1)[1]) <= card['iterations'] for a in averaged)
    assert (card['batch_size'], card['patch_size']) == (32, 64)
    assert 'RainTrainL' in card['training_data'] and card['wall_hours'] > 0
    # The learning-rate schedule the weights trained with (issue 41: lr 1e-4 from 9,534 on).
    stored = checkpointing.load_settings(SHIPPED['light'])
    assert card['schedule'] == checkpointing.schedule_text(stored['lr'], stored['lr_decay_step'],
                                                         card['iterations'])
    # The campaign's training folder records the owner's decision: lr 1e-4 from 9,534 on.
    campaign = checkpointing.load_settings(os.path.join(ROOT, 'checkpoints', 'ReMAEN_Rain100L_32'))
    assert (campaign['lr'], campaign['lr_decay_step']) == (1e-3, 9534)
    assert card['demo_set'] == 'Demo' and card['variables'] == 138


def model_card(name):
    """The measured facts of a shipped model (``checkpoints/ReMAEN_<name>/model_card.json``)."""
    with open(os.path.join(SHIPPED[name], 'model_card.json')) as handle:
        return json.load(handle)


@pytest.mark.slow
def test_heavy_model_derains_its_demo_set(tmp_path):
    """--model heavy on the 5 Rain100H demo pairs (never trained on) reproduces its card."""
    card = model_card('heavy')['demo']
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'main.py'), '--is_testing', 'True', '--model',
         'heavy', '--test_dataset', 'DemoHeavy', '--test_dir', str(tmp_path)], cwd=ROOT,
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(str(tmp_path), 'DemoHeavy', 'results.json')) as handle:
        mean = json.load(handle)['mean']
    for key in ('psnr', 'psnr_y'):
        # The gain over the rainy input measured when the model was shipped (float rounding
        # across machines is far below the 0.05 dB allowed here).
        assert abs(mean[key] - card[key]) < 0.05, (key, mean[key], card[key])
        assert mean[key] - mean['input'][key] > card[key] - card['input'][key] - 0.05
    assert abs(mean['ssim'] - card['ssim']) < 1e-3
