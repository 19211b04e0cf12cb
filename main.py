"""ReMAEN command line: train, test (with PSNR/SSIM), derain your own photos, export.

    python main.py --is_training True --train_dataset Rain100L --batch_size 32
    python main.py --is_testing True --train_dataset Rain100L --test_dataset Rain100L \
        --trainset_size 200 --testset_size 100 --batch_size 32
    python main.py --input my_photos/                 # the shipped light-rain model
    python main.py --input my_photos/ --model heavy   # the shipped heavy-rain model
    python main.py --export onnx --model light --export_dir exports/light_onnx

A thin layer: it parses the flags (``settings``) and runs them (``commands.run_commands``:
``training.train``, ``inference.Derainer`` + ``inference.derain_pairs``, ``deploy.export``).
Every fault a user can cause prints one ``error:`` line and returns exit code 2
(``errors.run``; no traceback unless --verbose).
"""
import sys

import checkpointing
import settings
from commands import run_commands
from commands.run import input_pairs  # noqa: F401  (re-exported for callers)
from console import errors, quiet
from console.errors import TrainingError, UsageError  # noqa: F401  (re-exported for callers)
from inference import Derainer, build_derainer, derain_pairs  # noqa: F401


# ----------------------------------------------------------------------------- flags -> paths
def model_config(args):
    """The ModelConfig of the network flags (kept here for scripts written against main)."""
    return settings.model_config(args)


def run_suffix(args):
    return settings.run_suffix(args)


def default_checkpoint_folder(args):
    return checkpointing.default_folder(args)


def resolve_checkpoint(args):
    return checkpointing.resolve_args(args)


def check_settings(folder, args, training=False):
    """Refuse a checkpoint whose stored settings differ from the flags (see checkpoints)."""
    checkpointing.check_settings(folder, settings.model_config(args),
                               args.edge_loss_weight if training else None)


def main(argv=None):
    """Run the CLI; returns the process exit code.

    Every fault a user can cause ends in one ``error:`` line (``errors.run``): 0 done, 2 a
    user error, 130/143 Ctrl-C/SIGTERM, 141 standard output closed, 1 a bug (docs/errors.md).
    """
    try:
        args = settings.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad flag (2, one ``error:`` line printed)
        return exc.code if isinstance(exc.code, int) else 2
    return errors.run(lambda: run_commands(args), verbose=quiet.is_verbose(args.verbose),
                      args=args)


if __name__ == '__main__':
    sys.exit(main())
