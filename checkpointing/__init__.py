"""The checkpoint room: the one package that names, finds, reads or writes checkpoint files.

Training, inference, the tools and the tests ask it; nothing else globs ``.index`` files or
knows the layout. ``<checkpoint_dir>/ReMAEN_<train_dataset>_<batch><suffix>/`` holds::

    ReMAEN-<step>.index, ReMAEN-<step>.data-*   training checkpoints (weights, global_step, Adam)
    ReMAEN.index, ReMAEN.data-*                 weights only (authors' release, shipped, exports)
    checkpoint                                  TensorFlow's state file, naming the newest
    remaen_settings.json                        architecture and training settings
    remaen_guard.json                           the divergence guard's recent batch losses
    remaen.lock                                 the training process writing here (pid, host)
    model_card.json                             a shipped model's measured facts

Modules: ``files`` (names, finding, atomic writes), ``variables`` (reading, compatibility,
restoring, means), ``settings_file`` (remaen_settings.json), ``training_folder`` (lock,
retention, rollback targets, guard file), ``weights`` (weights-only exports), ``shipped`` (the
shipped models, their cards, which checkpoint a command means), ``lockfile``. The names below
are the package's interface; import them from here. It asks ``settings`` and ``utils`` for the
flags' meaning and session options, ``console`` for errors and quiet TensorFlow, and imports
TensorFlow (and ``model``) only inside the functions that need it, after ``quiet.setup``.
Its guarantees are in docs/training.md ("Checkpoint folder guarantees").
"""
from checkpointing.files import (CheckpointError, DIVERGED_FOLDER, GUARD_FILE, LOCK_FILE, PREFIX,
                                 SETTINGS_FILE, STATE_FILE, candidates, checkpoint_folder,
                                 clean_temporaries, default_folder, find,
                                 holds_training_checkpoints, make_folder, newest_readable, resolve,
                                 select_prefixes, step_of, steps, unreadable, write_state)
from checkpointing.settings_file import (GUARD_IGNORED_SETTINGS, check_settings, load_settings,
                                         save_settings, stored_config)
from checkpointing.shipped import (CARD_FILE, CHECKPOINT_FLAGS, DEFAULT_SHIPPED_MODEL,
                                   SHIPPED_MODELS, is_shipped, location, model_card,
                                   resolve_args, schedule_text, shipped_model_folder)
from checkpointing.training_folder import TrainingFolder, make_saver
from checkpointing.variables import (NETWORK_FLAGS, check_compatible, make_restorer,
                                     mean_weights, read_variables, restore, stored_step)
from checkpointing.weights import export_mean_weights, export_weights, save_weights

__all__ = [
    'CARD_FILE', 'CHECKPOINT_FLAGS', 'CheckpointError', 'DEFAULT_SHIPPED_MODEL',
    'DIVERGED_FOLDER', 'GUARD_FILE', 'GUARD_IGNORED_SETTINGS', 'LOCK_FILE', 'NETWORK_FLAGS',
    'PREFIX', 'SETTINGS_FILE', 'SHIPPED_MODELS', 'STATE_FILE', 'TrainingFolder', 'candidates',
    'check_compatible', 'check_settings', 'checkpoint_folder', 'clean_temporaries',
    'default_folder', 'export_mean_weights', 'export_weights', 'find',
    'holds_training_checkpoints', 'is_shipped', 'load_settings', 'location', 'make_folder',
    'make_restorer', 'make_saver', 'mean_weights', 'model_card', 'newest_readable',
    'read_variables', 'resolve', 'resolve_args', 'restore', 'save_settings', 'save_weights',
    'schedule_text', 'select_prefixes', 'shipped_model_folder', 'step_of', 'steps',
    'stored_config', 'stored_step', 'unreadable', 'write_state',
]
