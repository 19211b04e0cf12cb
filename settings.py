"""Command-line settings of ReMAEN (the names of the authors' release are kept).

Nothing is parsed at import: call ``build_parser()`` or ``parse_args(argv)``.
"""
import argparse
import os

DEFAULT_DILATIONS = (1, 2, 3)


def str2bool(value):
    """argparse type for booleans: True/False, 1/0, yes/no, y/n, on/off (any case).

    The authors' ``type=bool`` turned every non-empty string, ``'False'`` included, into True.
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ('true', '1', 'yes', 'y', 'on', 't'):
        return True
    if text in ('false', '0', 'no', 'n', 'off', 'f'):
        return False
    raise argparse.ArgumentTypeError('expected a boolean (True/False, 1/0, yes/no), got %r'
                                     % value)


def _bounded(cast, minimum, expected, invalid=None):
    """An argparse type: ``cast(value)`` that must be >= ``minimum``.

    Args:
      cast: int or float.
      minimum: smallest accepted value.
      expected: message text for out-of-range values ('expected <expected>, got ...').
      invalid: message text for values ``cast`` rejects (default: ``expected``).
    """
    def check(value):
        try:
            number = cast(value)
        except ValueError:
            raise argparse.ArgumentTypeError('expected %s, got %r' % (invalid or expected,
                                                                     value))
        if number < minimum:
            raise argparse.ArgumentTypeError('expected %s, got %r' % (expected, value))
        return number
    return check


nonnegative_int = _bounded(int, 0, 'an integer >= 0')
nonnegative_int.__doc__ = 'argparse type: an integer >= 0.'
positive_int = _bounded(int, 1, 'a positive integer')
positive_int.__doc__ = 'argparse type: an integer >= 1.'
non_negative_float = _bounded(float, 0, 'a number >= 0', invalid='a number')
non_negative_float.__doc__ = 'argparse type: a float >= 0.'


def build_parser():
    """The argument parser of ``main.py``, with the paper's defaults.

    Returns:
      argparse.ArgumentParser.
    """
    parser = argparse.ArgumentParser(
        prog='main.py',
        description='ReMAEN single-image deraining (Yang & Lu, ICME 2019): train, test and '
                    'derain your own photos.',
        epilog='Examples:\n'
               '  python main.py --is_training True --train_dataset Rain100L --batch_size 32\n'
               '  python main.py --is_testing True --train_dataset Rain100L '
               '--test_dataset Rain100L --batch_size 32\n'
               '  python main.py --input my_photos/               # shipped light model\n'
               '  python main.py --input my_photos/ --model heavy # shipped heavy model\n',
        formatter_class=argparse.RawDescriptionHelpFormatter)

    opt = parser.add_argument_group('optimisation (paper defaults)')
    opt.add_argument('--lr', type=float, default=1e-3, help='Adam learning rate (default 1e-3)')
    opt.add_argument('--beta1', type=float, default=0.9, help='Adam beta1 (default 0.9)')
    opt.add_argument('--beta2', type=float, default=0.999, help='Adam beta2 (default 0.999)')
    opt.add_argument('--lr_decay_step', type=positive_int, default=30000,
                     help='iteration from which lr is multiplied by 0.1 (default 30000)')
    opt.add_argument('--iterations', type=positive_int, default=40000,
                     help='total training iterations (default 40000); a rerun resumes')
    opt.add_argument('--batch_size', type=positive_int, default=32,
                     help='training batch size; also names the checkpoint folder (default 32)')
    opt.add_argument('--patch_size', type=positive_int, default=64,
                     help='side of the random training crops (default 64)')
    opt.add_argument('--edge_loss_weight', type=non_negative_float, default=0.1,
                     help='weight of the edge loss; 0 disables it (default 0.1)')
    opt.add_argument('--flip', type=str2bool, default=False,
                     help='random horizontal flips of training crops (default False: paper)')
    opt.add_argument('--seed', type=int, default=None,
                     help='random seed for weights and crops (default: not fixed)')

    net = parser.add_argument_group('network (paper defaults; other values are ablations)')
    net.add_argument('--channel_dim', type=positive_int, default=32,
                     help='feature channels (default 32)')
    net.add_argument('--stages', type=positive_int, default=3,
                     help='recurrent stages (default 3)')
    net.add_argument('--dilations', type=positive_int, nargs='+',
                     default=list(DEFAULT_DILATIONS),
                     help='MAEB dilation rates (default 1 2 3; one rate = single scale)')
    net.add_argument('--shared_attention', type=str2bool, default=True,
                     help='one SE block shared by the GRUs of a path (default True)')
    net.add_argument('--skip_connections', type=str2bool, default=True,
                     help='MAEB -> responding-path skips (default True)')

    mode = parser.add_argument_group('what to run')
    mode.add_argument('--is_training', type=str2bool, default=False,
                      help='train (True/False, default False)')
    mode.add_argument('--is_testing', type=str2bool, default=False,
                      help='test on --test_dataset with metrics (True/False, default False)')
    mode.add_argument('--phase', type=str, default='train', choices=['train', 'test'],
                      help="kept from the original release; 'test' is the same as "
                           "--is_testing True when neither flag is given")
    mode.add_argument('--verbose', type=str2bool, nargs='?', const=True, default=False,
                      help="show TensorFlow's own log lines and warnings (default False; "
                           'REMAEN_VERBOSE=1 does the same)')
    mode.add_argument('--input', type=str, default=None,
                      help='derain your own photos: an image file or a folder (no ground '
                           'truth needed); results go to --test_dir')

    paths = parser.add_argument_group('data and output folders')
    paths.add_argument('--data_path', type=str, default='data/train/{}',
                       help="training data folder; '{}' is replaced by --train_dataset "
                            "(default data/train/{})")
    paths.add_argument('--test_path', type=str, default='data/test/{}',
                       help="test data folder; '{}' is replaced by --test_dataset "
                            "(default data/test/{})")
    paths.add_argument('--train_dataset', type=str, default='Rain100L',
                       help='training set name; names the checkpoint folder (default Rain100L)')
    paths.add_argument('--test_dataset', type=str, default=None,
                       help='test set name; labels the results folder <test_dir>/<name> '
                            "(default Rain100L, or the folder's name when --test_path is a "
                            'folder without {})')
    paths.add_argument('--trainset_size', type=positive_int, default=None,
                       help='use at most this many training pairs (default: all found)')
    paths.add_argument('--testset_size', type=positive_int, default=None,
                       help='use at most this many test pairs (default: all found)')
    paths.add_argument('--rainy_half', choices=['left', 'right'], default=None,
                       help='for side-by-side pair images (Rain800, Rain1200): which half is '
                            'the rainy one')
    paths.add_argument('--checkpoint_dir', type=str, default='checkpoints',
                       help='root of the checkpoint folders (default checkpoints)')
    paths.add_argument('--model', choices=['light', 'heavy'], default=None,
                       help='use a shipped model: light (trained on Rain100L) or heavy '
                            '(Rain100H); --input without checkpoint flags uses light')
    paths.add_argument('--checkpoint', type=str, default=None,
                       help='explicit checkpoint prefix or folder to test with (e.g. the '
                            "authors' checkpoint/ReMAEN_Rain100L_32/)")
    paths.add_argument('--test_dir', type=str, default='results',
                       help='derained images and results.csv/json go to '
                            '<test_dir>/<test_dataset> (default results)')
    paths.add_argument('--sample_dir', type=str, default='samples',
                       help='training sample images (default samples)')
    paths.add_argument('--logs_dir', type=str, default='logs',
                       help='TensorBoard summaries (default logs)')
    run = parser.add_argument_group('training run')
    run.add_argument('--save_every', type=positive_int, default=1000,
                     help='save a checkpoint every N iterations (default 1000; also at the end '
                          'and on Ctrl-C/SIGTERM)')
    run.add_argument('--keep_checkpoints', type=positive_int, default=5,
                     help='how many recent checkpoints to keep (default 5)')
    run.add_argument('--summary_every', type=positive_int, default=100,
                     help='TensorBoard summaries every N iterations (default 100)')
    run.add_argument('--sample_every', type=positive_int, default=1000,
                     help='write rain|derained|clean|residual samples of test images every '
                          'N iterations (default 1000)')
    run.add_argument('--eval_every', type=nonnegative_int, default=0,
                     help='every N iterations derain the test set (--test_dataset) and append '
                          'every stage\'s PSNR/SSIM to <logs_dir>/<run>/curve.csv and '
                          'TensorBoard (default 0 = off)')
    run.add_argument('--eval_images', type=positive_int, default=None,
                     help='evaluate on the first K test images only (default: all)')
    run.add_argument('--memory_budget_mb', type=int, default=2048,
                     help='keep the decoded training set in memory up to this size, else read '
                          'lazily (default 2048)')
    run.add_argument('--num_gpus', type=positive_int, default=1,
                     help='data-parallel towers on GPUs 0..N-1, batch split evenly (default 1)')
    run.add_argument('--horovod', type=str2bool, default=False,
                     help='multi-machine training with Horovod: horovodrun -np K python main.py '
                          '... --horovod True (default False)')
    run.add_argument('--export_weights', type=str, default=None,
                     help='write the weights only (no Adam slots) of the checkpoint selected '
                          'as for testing into this folder')

    perf = parser.add_argument_group('performance')
    perf.add_argument('--tile', type=nonnegative_int, default=0,
                      help='derain large images in tiles of this side (pixels), exact up to '
                           'float rounding; 0 = whole image in one pass (default 0)')
    perf.add_argument('--tile_mode', choices=['exact', 'fast'], default='exact',
                      help='tiled inference: exact (equal to a whole-image pass, ~19 passes) '
                           'or fast (~2 passes, approximate SE statistics; for large photos; '
                           'see docs/tiling.md) (default exact)')
    perf.add_argument('--tile_overlap', type=nonnegative_int, default=None,
                      help='halo around each tile in pixels (default: the network\'s '
                           'receptive field radius, which makes tiling exact)')
    add_session_flags(perf)
    return parser


def add_session_flags(group):
    """The TensorFlow session flags, shared by main.py and bench.py.

    ``utils.session_config`` reads the thread and XLA flags; ``precision.from_args``
    combines ``--precision`` and the older ``--mixed_precision`` into one precision.

    Args:
      group: argparse parser or argument group, extended in place.
    """
    group.add_argument('--intra_op_threads', type=int, default=0,
                       help='TensorFlow intra-op threads (default 0 = one per core)')
    group.add_argument('--inter_op_threads', type=int, default=0,
                       help='TensorFlow inter-op threads (default 0 = automatic)')
    group.add_argument('--xla', type=str2bool, default=False,
                       help='compile the graph with XLA (default False)')
    group.add_argument('--precision', choices=['fp32', 'bf16', 'fp16', 'auto'], default=None,
                       help='compute precision; variables and checkpoints stay float32 in '
                            'all: fp32 (the paper\'s numbers), bf16 (CPUs with avx512_bf16 '
                            'or amx_bf16: oneDNN runs the convolutions in bfloat16), fp16 '
                            '(GPUs), auto (fp16 on a GPU, bf16 on such a CPU, else fp32). '
                            'What the machine lacks falls back with a note. Default fp32 '
                            '(testing reports the paper\'s fp32 numbers), or fp16 with '
                            '--mixed_precision True')
    group.add_argument('--mixed_precision', type=str2bool, default=False,
                       help='old name of --precision fp16: float16 compute on GPUs (fp32 '
                            'with a note on a CPU; default False)')


def given_flags(argv=None):
    """The destinations of the flags present in ``argv`` (abbreviations included)."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def parse_args(argv=None):
    """Parse ``argv`` (None = sys.argv[1:]) and resolve the defaults that depend on others.

    * ``--phase test`` alone means ``--is_testing True`` (the original release's flag).
    * ``--test_dataset`` defaults to ``Rain100L``, or to the folder's name when
      ``--test_path`` is given as a folder (no ``{}``), so results are labelled by it.
    * ``args.given``: the set of flags present on the command line.
    """
    args = build_parser().parse_args(argv)
    args.given = given_flags(argv)
    if args.phase == 'test' and not args.is_training and not args.is_testing:
        args.is_testing = True
    if args.test_dataset is None:
        if '{}' in args.test_path:
            args.test_dataset = 'Rain100L'
        else:
            args.test_dataset = os.path.basename(os.path.normpath(args.test_path)) or 'test'
    return args


# ----------------------------------------------------------------------------- what flags mean
PAPER_EDGE_LOSS_WEIGHT = 0.1


def model_config(args):
    """The model.ModelConfig described by the network flags."""
    from model import ModelConfig
    return ModelConfig(stages=args.stages, channels=args.channel_dim,
                       dilations=tuple(args.dilations),
                       shared_attention=args.shared_attention,
                       skip_connections=args.skip_connections)


def run_suffix(args):
    """Checkpoint-folder suffix: '' for the paper's model and loss, else one tag per change."""
    suffix = model_config(args).suffix()
    if args.edge_loss_weight != PAPER_EDGE_LOSS_WEIGHT:
        suffix += '_edge%g' % args.edge_loss_weight
    return suffix


def run_settings(args):
    """What is stored next to a checkpoint (remaen_settings.json)."""
    return {'model': model_config(args).to_dict(), 'edge_loss_weight': args.edge_loss_weight,
            'train_dataset': args.train_dataset, 'batch_size': args.batch_size,
            'patch_size': args.patch_size, 'lr': args.lr, 'lr_decay_step': args.lr_decay_step}


def default_checkpoint_folder(args):
    """``<checkpoint_dir>/ReMAEN_<train_dataset>_<batch_size><suffix>`` (paper naming)."""
    import os
    return os.path.join(args.checkpoint_dir, 'ReMAEN_%s_%d%s' % (
        args.train_dataset, args.batch_size, run_suffix(args)))


def print_configuration(args, title):
    """The flags of a run, one per line (the first lines of every training log)."""
    print('== ReMAEN %s ==' % title)
    for key in sorted(vars(args)):
        print('  %-18s %s' % (key, getattr(args, key)))
