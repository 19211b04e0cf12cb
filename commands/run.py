"""What ``python main.py`` does with its flags: check the request, then run each command.

``run_commands(args)`` checks what is cheap before TensorFlow starts (path flags, output
folders, the ``--input`` photos), then trains (``training.train``), tests (``test``: the test
set derained and measured), derains ``--input`` photos (``derain_input``), exports the weights
(``export_weights``) and exports the model (``export_model``: ``deploy.export``), in that
order. Faults are raised (``UsageError``, ``DataError``, ``CheckpointError``, ...); the caller
turns them into one ``error:`` line (``errors.run`` in main.py). Scripts that run a command as a
user would (bench.py, tools/ship_model.py) call ``run_commands(settings.parse_args([...]))``.
"""
import os
import stat

import checkpointing
import dataloader
import inference
import settings
import utils
from console import quiet
from console.errors import UsageError
from deploy import export
from loading import images


# ----------------------------------------------------------------------------- commands
def test(args):
    """--is_testing: derain the test set and report PSNR/SSIM in both protocols."""
    folder = dataloader.resolve_dataset_dir(args.test_path, args.test_dataset, '--test_path')
    pairs, _ = dataloader.find_pairs(folder, rainy_half=args.rainy_half, allow_missing_gt=True,
                                     limit=args.testset_size)
    dataloader.check_pairs(pairs)
    out_dir = inference.results_folder(args.test_dir, args.test_dataset, folder)
    inference.check_output_dir(out_dir)
    return _derain(args, pairs, out_dir, args.test_dataset, folder)


def input_pairs(args):
    """The photos of --input FILE|FOLDER, checked before any work: (pairs, label, source).

    A folder gives every image directly in it (``dataloader.folder_images``: no dataset
    layout, subfolders not searched); a file must decode. Results are labelled by the
    folder's name or the file's stem.

    Raises:
      DataError: missing path, not a file or folder (e.g. /dev/null), no images, a file that
        is not an image; OSError (e.g. permissions), reported by ``errors``.
    """
    path = args.input
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise dataloader.DataError('--input %s does not exist; pass an image file or a folder '
                                   'of images' % path)
    if stat.S_ISDIR(mode):
        pairs = dataloader.folder_images(path)
        label = os.path.basename(os.path.abspath(path))
    elif stat.S_ISREG(mode):
        # A clear error for unreadable files, before TF starts: what the file is, then
        # whether it decodes.
        images.check_file(path)
        dataloader.read_image(path)
        label = os.path.splitext(os.path.basename(path))[0]
        pairs = [dataloader.Pair(label, path, None, None)]
    else:
        raise dataloader.DataError('--input %s is not an image file or a folder (it is a %s); '
                                   'pass a photo or a folder of photos'
                                   % (path, _file_kind(mode)))
    dataloader.check_pairs(pairs)
    return pairs, label, path


def _file_kind(mode):
    for test_kind, kind in ((stat.S_ISCHR, 'device'), (stat.S_ISBLK, 'block device'),
                            (stat.S_ISFIFO, 'named pipe'), (stat.S_ISSOCK, 'socket')):
        if test_kind(mode):
            return kind
    return 'special file'


def derain_input(args, inputs=None):
    """--input FILE|DIR: derain the user's own images (no ground truth needed).

    Args:
      args: parsed flags.
      inputs: ``input_pairs(args)`` when already checked.
    """
    pairs, label, source = inputs or input_pairs(args)
    out_dir = inference.results_folder(args.test_dir, label, source)
    inference.check_output_dir(out_dir)
    return _derain(args, pairs, out_dir, label, source)


def _derain(args, pairs, out_dir, label, source):
    """Derain ``pairs`` into ``out_dir`` with the derainer of the flags."""
    derainer = inference.build_derainer(args, _tile_progress())
    try:
        return inference.derain_pairs(derainer, pairs, out_dir, label, source=source)
    finally:
        derainer.close()


def _tile_progress():
    """Per-tile progress lines with the time left (see progress.TileProgress)."""
    from console.progress import TileProgress
    return TileProgress()


def export_weights(args):
    """--export_weights DIR: copy the network weights (no Adam slots, no step) to DIR/ReMAEN.

    DIR must not hold training checkpoints (``checkpointing.export_weights`` refuses it).
    """
    prefix = checkpointing.resolve_args(args)
    folder = os.path.dirname(prefix)
    config = settings.model_config(args)
    checkpointing.check_settings(folder, config)
    values = checkpointing.load_settings(folder) or settings.run_settings(args)
    target, count, size = checkpointing.export_weights(prefix, args.export_weights, config, values)
    print('Exported %d variables from %s to %s (%.1f MB)' % (count, prefix, target, size / 1e6))


def export_model(args):
    """--export FORMAT --export_dir DIR: the model as a SavedModel, ONNX or LiteRT file,
    checked against the graph on the demo pairs (``deploy.export``), with its model card."""
    prefix, config = inference.resolve_model(args)
    card = checkpointing.model_card(os.path.dirname(prefix))
    check_images = export.demo_images(card)
    print('Exporting %s as %s' % (prefix, args.export))
    section = export.export(prefix, config, args.export, args.export_dir, check_images, card,
                            utils.flags_session_config(args, 'fp32'))
    sizes = export.files_of(args.export_dir)
    print('Exported %s: %s (%.1f MB in %d files, with %s)'
          % (args.export, args.export_dir, sum(sizes.values()) / 1e6, len(sizes),
             export.CARD_FILE))
    check = section['check']
    print('export check: max |diff| %.1e on %d images (against the graph with the export\'s '
          'options; %.1e from the default graph, docs/deploy.md)'
          % (check['max_abs_diff'], len(check['images']), check['default_graph_diff']))


# ----------------------------------------------------------------------------- entry point
# Path flags that must not be given as '' (an empty path would mean the current folder).
PATH_FLAGS = ('input', 'export_weights', 'checkpoint', 'checkpoint_dir', 'test_dir',
              'logs_dir', 'sample_dir', 'data_path', 'test_path', 'export_dir')


def run_commands(args):
    """Check the request, then train, test, derain --input, export the weights and export
    the model, in that order.

    What is cheap to check (flags, output folders, the --input photos) is checked before
    TensorFlow starts.
    """
    empty = [name for name in PATH_FLAGS if getattr(args, name) == '']
    if empty:
        raise UsageError('--%s is empty; pass a path' % empty[0])
    if not (args.is_training or args.is_testing or args.input is not None
            or args.export_weights is not None or args.export is not None):
        raise UsageError('nothing to do: pass --is_training True, --is_testing True, --input '
                         'PATH, --export_weights DIR or --export FORMAT (see --help)')
    if (args.export is None) != (args.export_dir is None):
        raise UsageError('--export FORMAT and --export_dir DIR go together; pass both')
    if args.num_gpus > 1 and args.horovod:
        raise UsageError('use either --num_gpus N (one machine) or --horovod True, not both')
    if args.is_training and args.keep_every and args.keep_every % args.save_every:
        raise UsageError('--keep_every %d is not a multiple of --save_every %d: checkpoints '
                         'are only saved at multiples of --save_every; pass a multiple of it'
                         % (args.keep_every, args.save_every))
    check_outputs(args)
    quiet.setup(verbose=args.verbose)
    inputs = input_pairs(args) if args.input is not None else None
    quiet.import_tf()  # the first TensorFlow import, with its start-up noise silenced
    from machine import precision
    args.precision = precision.from_args(args)
    if args.is_training:
        import training
        training.train(args)
    if args.is_testing:
        test(args)
    if inputs:
        derain_input(args, inputs)
    if args.export_weights is not None:
        export_weights(args)
    if args.export is not None:
        export_model(args)


def check_outputs(args):
    """UsageError now for an output folder of the commands that cannot be created (e.g.
    below a regular file) or written; creates nothing."""
    names = []
    if args.is_training:
        names += ['checkpoint_dir', 'logs_dir', 'sample_dir']
    if args.is_testing or args.input is not None:
        names.append('test_dir')
    if args.export_weights is not None:
        names.append('export_weights')
    for name in names:
        inference.check_output_dir(getattr(args, name), '--' + name)
    if args.export is not None:
        export.check_target(args.export_dir)

