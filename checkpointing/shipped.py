"""The shipped models (``--model light|heavy``) and where a command's checkpoint comes from.

``SHIPPED_MODELS`` names their folders, ``model_card`` reads the measured facts beside them
(``model_card.json``, written by tools/ship_model.py; ``schedule_text`` words the learning-rate
schedule on it), and ``location`` / ``resolve_args`` turn ``--checkpoint``, ``--model`` and the
training flags into one checkpoint prefix. Asks ``files`` to find checkpoints.
"""
import json
import os

import settings
from checkpointing.files import default_folder, resolve


PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Folders of the shipped models (weights only, with remaen_settings.json), by --model name.
SHIPPED_MODELS = {'light': os.path.join('checkpoints', 'ReMAEN_light'),
                  'heavy': os.path.join('checkpoints', 'ReMAEN_heavy')}
DEFAULT_SHIPPED_MODEL = 'light'
# Flags that name a checkpoint: without any of them, --input uses the shipped default model.
CHECKPOINT_FLAGS = ('checkpoint', 'model', 'train_dataset', 'batch_size', 'checkpoint_dir')


def shipped_model_folder(name):
    """Absolute folder of a shipped model (relative to the project root, so any cwd works)."""
    return os.path.join(PROJECT_ROOT, SHIPPED_MODELS[name])


def is_shipped(prefix):
    """True when ``prefix`` lies in a shipped model's folder."""
    return os.path.dirname(os.path.abspath(prefix)) in {
        os.path.abspath(shipped_model_folder(name)) for name in SHIPPED_MODELS}


CARD_FILE = 'model_card.json'   # a shipped model's measured facts (tools/ship_model.py)


def model_card(folder):
    """The dict of ``<folder>/model_card.json`` (a shipped model's facts), None without one."""
    try:
        with open(os.path.join(folder, CARD_FILE), encoding='utf-8') as handle:
            card = json.load(handle)
    except (OSError, ValueError):
        return None
    return card if isinstance(card, dict) else None


def schedule_text(lr, decay_step, iterations, decay_rate=0.1):
    """The learning-rate schedule a checkpoint of ``iterations`` trained with, in words.

    Args:
      lr: the run's ``--lr`` (float > 0).
      decay_step: its ``--lr_decay_step``: ``lr * decay_rate`` from that iteration on.
      iterations: the checkpoint's step.

    Returns:
      e.g. 'lr 1e-3 to 9,534, 1e-4 after (paper: to 30,000)', or 'lr 1e-3 throughout (paper:
      to 30,000)' when the checkpoint is from before ``decay_step``.
    """
    default = settings.build_parser().get_default('lr_decay_step')
    paper = '' if decay_step == default else ' (paper: to {:,})'.format(default)
    if iterations is not None and iterations <= decay_step:
        return 'lr %s throughout%s' % (_rate(lr), paper)
    return 'lr {} to {:,}, {} after{}'.format(_rate(lr), decay_step, _rate(lr * decay_rate),
                                              paper)


def _rate(value):
    """'1e-3' for 0.001, '2.5e-4' for 0.00025 (a learning rate as people write it)."""
    mantissa, exponent = ('%.2e' % value).split('e')
    return '%se%d' % (mantissa.rstrip('0').rstrip('.'), int(exponent))


def location(args, log=print):
    """Where the checkpoint of parsed flags is: ``--checkpoint``, ``--model``, or the default
    folder of ``--train_dataset``/``--batch_size``; ``--input`` without any checkpoint flag
    uses the shipped light model (and says so). Testing never falls back silently."""
    given = getattr(args, 'given', set())
    if args.checkpoint:
        return args.checkpoint
    if getattr(args, 'model', None):
        return shipped_model_folder(args.model)
    if args.input and not args.is_testing and not (set(CHECKPOINT_FLAGS) & given):
        where = shipped_model_folder(DEFAULT_SHIPPED_MODEL)
        log('Using the shipped %s-rain model %s (--model heavy for heavy rain, or '
            '--checkpoint PATH)' % (DEFAULT_SHIPPED_MODEL, os.path.relpath(where)))
        return where
    return default_folder(args)


def resolve_args(args, log=print):
    """Checkpoint prefix of parsed flags (``location``, ``resolve``); CheckpointError if none."""
    return resolve(location(args, log), log)
