"""ReMAEN command line: train, test (with PSNR/SSIM) and derain your own photos.

    python main.py --is_training True --train_dataset Rain100L --batch_size 32
    python main.py --is_testing True --train_dataset Rain100L --test_dataset Rain100L \
        --trainset_size 200 --testset_size 100 --batch_size 32
    python main.py --input my_photos/                 # the shipped light-rain model
    python main.py --input my_photos/ --model heavy   # the shipped heavy-rain model

A thin layer: it parses the flags (``settings``) and calls the library (``training.train``,
``inference.Derainer`` + ``inference.derain_pairs``). User errors print one ``error:`` line
and return exit code 2 (no traceback).
"""
import os
import sys

import settings
from errors import TrainingError, UsageError  # noqa: F401  (re-exported for callers)

from inference import (DEFAULT_SHIPPED_MODEL, SHIPPED_MODELS, Derainer,  # noqa: F401
                       build_derainer, checkpoint_location, derain_pairs,
                       resolve_checkpoint_of, shipped_model_folder)


# ----------------------------------------------------------------------------- flags -> paths
def model_config(args):
    """The ModelConfig of the network flags (kept here for scripts written against main)."""
    return settings.model_config(args)


def run_suffix(args):
    return settings.run_suffix(args)


def default_checkpoint_folder(args):
    return settings.default_checkpoint_folder(args)


def resolve_checkpoint(args):
    return resolve_checkpoint_of(args)


def check_settings(folder, args, training=False):
    """Refuse a checkpoint whose stored settings differ from the flags (see inference)."""
    import inference
    inference.check_settings(folder, settings.model_config(args),
                             args.edge_loss_weight if training else None)


# ----------------------------------------------------------------------------- commands
def test(args):
    """--is_testing: derain the test set and report PSNR/SSIM in both protocols."""
    import dataloader
    import inference
    folder = dataloader.resolve_dataset_dir(args.test_path, args.test_dataset, '--test_path')
    pairs, _ = dataloader.find_pairs(folder, rainy_half=args.rainy_half, allow_missing_gt=True,
                                     limit=args.testset_size)
    out_dir = os.path.join(args.test_dir, args.test_dataset)
    inference.check_output_dir(out_dir)
    derainer = build_derainer(args, _tile_progress())
    try:
        return inference.derain_pairs(derainer, pairs, out_dir, args.test_dataset)
    finally:
        derainer.close()


def derain_input(args):
    """--input FILE|DIR: derain the user's own images (no ground truth needed)."""
    import dataloader
    import inference
    path = args.input
    if os.path.isfile(path):
        dataloader.read_image(path)  # a clear error for unreadable files, before TF starts
        stem = os.path.splitext(os.path.basename(path))[0]
        pairs = [dataloader.Pair(stem, path, None, None)]
        label = stem
    elif os.path.isdir(path):
        pairs, _ = dataloader.find_pairs(path, rainy_half=args.rainy_half,
                                         allow_missing_gt=True)
        label = os.path.basename(os.path.normpath(path))
    else:
        raise dataloader.DataError('--input %s does not exist; pass an image file or a folder '
                                   'of images' % path)
    out_dir = os.path.join(args.test_dir, label)
    inference.check_output_dir(out_dir)
    derainer = build_derainer(args, _tile_progress())
    try:
        return inference.derain_pairs(derainer, pairs, out_dir, label)
    finally:
        derainer.close()


def _tile_progress():
    """Per-tile progress lines with the time left (see progress.TileProgress)."""
    from progress import TileProgress
    return TileProgress()


def export_weights(args):
    """--export_weights DIR: copy the network weights (no Adam slots, no step) to DIR/ReMAEN."""
    import inference
    import model
    import quiet
    import utils
    tf = quiet.import_tf()
    prefix = resolve_checkpoint(args)
    folder = os.path.dirname(prefix)
    config = settings.model_config(args)
    inference.check_settings(folder, config)
    with tf.Graph().as_default():
        model.build_inference_graph(config)
        variables = model.model_variables()
        with tf.Session(config=utils.session_config()) as sess:
            utils.restore(sess, prefix, variables)
            os.makedirs(args.export_weights, exist_ok=True)
            target = os.path.join(args.export_weights, utils.CHECKPOINT_PREFIX)
            tf.train.Saver(variables).save(sess, target, write_meta_graph=False)
    stored = dict(utils.load_settings(folder) or settings.run_settings(args))
    stored['model'] = config.to_dict()          # in this version's terms
    utils.save_settings(args.export_weights, stored)
    size = sum(os.path.getsize(os.path.join(args.export_weights, f))
               for f in os.listdir(args.export_weights))
    print('Exported %d variables from %s to %s (%.1f MB)'
          % (len(variables), prefix, target, size / 1e6))


# ----------------------------------------------------------------------------- entry point
def main(argv=None):
    """Run the CLI; returns the process exit code."""
    args = settings.parse_args(argv)
    if not (args.is_training or args.is_testing or args.input or args.export_weights):
        print('Nothing to do: pass --is_training True, --is_testing True, --input PATH or '
              '--export_weights DIR (see --help).', file=sys.stderr)
        return 2
    import quiet
    quiet.setup(verbose=args.verbose)
    quiet.import_tf()  # the first TensorFlow import, with its start-up noise silenced
    import errors
    try:
        import precision
        args.precision = precision.from_args(args)
        if args.num_gpus > 1 and args.horovod:
            raise UsageError('use either --num_gpus N (one machine) or --horovod True, '
                             'not both')
        if args.is_training:
            import training
            training.train(args)
        if args.is_testing:
            test(args)
        if args.input:
            derain_input(args)
        if args.export_weights:
            export_weights(args)
    except errors.user_errors() as exc:
        print('error: %s' % exc, file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
