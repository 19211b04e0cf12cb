"""Command-line settings of ReMAEN (the names of the authors' release are kept).

Nothing is parsed at import: call ``build_parser()`` or ``parse_args(argv)``.
"""
import argparse
import math
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


def _bounded(cast, minimum, expected, invalid=None, below=None, strict=False):
    """An argparse type: ``cast(value)`` within a range (floats must also be finite).

    Args:
      cast: int or float.
      minimum: smallest accepted value (excluded when ``strict``).
      expected: message text for out-of-range values ('expected <expected>, got ...').
      invalid: message text for values ``cast`` rejects (default: ``expected``).
      below: None, or the first value too large (excluded).
      strict: ``minimum`` itself is refused (e.g. a learning rate > 0).
    """
    def check(value):
        try:
            number = cast(value)
        except ValueError:
            raise argparse.ArgumentTypeError('expected %s, got %r' % (invalid or expected,
                                                                     value))
        if (not math.isfinite(number) or number < minimum or (strict and number == minimum)
                or (below is not None and number >= below)):
            raise argparse.ArgumentTypeError('expected %s, got %r' % (expected, value))
        return number
    return check


MAX_INT = 2 ** 31 - 1       # counts, sizes, steps, seeds: TensorFlow graphs hold int32s
MAX_THREADS = 1024          # --intra_op_threads/--inter_op_threads (TensorFlow aborts on < 0)
MIN_TILE = 64               # smaller tiles are refused: they recompute their halo ~100x
SLOW_TILE = 256             # smaller tiles get a note: several times slower than 512+
# Peak training memory per pixel of a batch (batch * patch^2) of the paper's model on a CPU:
# 7.0 GB for 32 x 64 x 64, of which 0.65 GB is TensorFlow itself (docs/performance.md).
TRAIN_BYTES_PER_PIXEL = 49000
TRAIN_BASE_BYTES = 0.65e9

nonnegative_int = _bounded(int, 0, 'an integer from 0 to %d' % MAX_INT, below=MAX_INT + 1)
nonnegative_int.__doc__ = 'argparse type: an integer >= 0 (and < 2^31).'
positive_int = _bounded(int, 1, 'an integer from 1 to %d' % MAX_INT, below=MAX_INT + 1)
positive_int.__doc__ = 'argparse type: an integer >= 1 (and < 2^31).'
non_negative_float = _bounded(float, 0, 'a finite number >= 0', invalid='a number')
non_negative_float.__doc__ = 'argparse type: a finite float >= 0.'
positive_float = _bounded(float, 0, 'a finite number > 0', invalid='a number', strict=True)
positive_float.__doc__ = 'argparse type: a finite float > 0.'
unit_float = _bounded(float, 0, 'a number in [0, 1)', invalid='a number', below=1)
unit_float.__doc__ = 'argparse type: a float in [0, 1) (Adam betas).'
thread_count = _bounded(int, 0, 'an integer from 0 to %d' % MAX_THREADS, below=MAX_THREADS + 1)
thread_count.__doc__ = 'argparse type: 0 (automatic) or a number of threads.'


def tile_size(value):
    """argparse type of --tile: 0 (whole images) or at least ``MIN_TILE`` pixels."""
    number = nonnegative_int(value)
    if 0 < number < MIN_TILE:
        raise argparse.ArgumentTypeError(
            'expected 0 or a tile of at least %d pixels, got %r: every tile is computed with '
            'a halo of about 120 pixels around it, so tiles this small spend nearly all their '
            'time on the halo (use 512 or more; docs/tiling.md)' % (MIN_TILE, value))
    return number


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one ``error:`` line (the usage is in --help)."""

    def error(self, message):
        self.exit(2, 'error: %s (python %s --help lists the flags)\n' % (message, self.prog))


def build_parser():
    """The argument parser of ``main.py``, with the paper's defaults.

    Returns:
      argparse.ArgumentParser.
    """
    parser = _Parser(
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
    opt.add_argument('--lr', type=positive_float, default=1e-3,
                     help='Adam learning rate, > 0 (default 1e-3)')
    opt.add_argument('--beta1', type=unit_float, default=0.9,
                     help='Adam beta1, in [0, 1) (default 0.9)')
    opt.add_argument('--beta2', type=unit_float, default=0.999,
                     help='Adam beta2, in [0, 1) (default 0.999)')
    opt.add_argument('--lr_decay_step', type=positive_int, default=30000,
                     help='iteration from which lr is multiplied by 0.1 (default 30000)')
    opt.add_argument('--iterations', type=positive_int, default=40000,
                     help='total training iterations (default 40000); a rerun resumes')
    opt.add_argument('--batch_size', type=positive_int, default=32,
                     help='training batch size; also names the checkpoint folder; refused '
                          'when its estimated memory exceeds the machine\'s (default 32)')
    opt.add_argument('--patch_size', type=positive_int, default=64,
                     help='side of the random training crops (default 64)')
    opt.add_argument('--edge_loss_weight', type=non_negative_float, default=0.1,
                     help='weight of the edge loss; 0 disables it (default 0.1)')
    opt.add_argument('--flip', type=str2bool, default=False,
                     help='random horizontal flips of training crops (default False: paper)')
    opt.add_argument('--seed', type=nonnegative_int, default=None,
                     help='random seed for weights and crops, 0 to 2^31-1; a resumed run '
                          'continues the crop sequence where it stopped (default: not fixed)')

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
    paths.add_argument('--rain_layers', type=str, default=None, metavar='PAIRED_FOLDER',
                       help='training on real rain layers: each training crop is the clean '
                            'image of a training pair (or of a pair of this folder) with the '
                            'rain (rainy - clean) of a random crop of a random pair of this '
                            'folder added, clipped at 1; any paired layout '
                            '(docs/training.md) (default: train on the pairs as they are)')
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
    run.add_argument('--init_weights', type=str, default=None, metavar='CHECKPOINT',
                     help='warm start of a new run: the network weights of this checkpoint '
                          '(a prefix or folder, e.g. checkpoints/ReMAEN_light), with fresh '
                          'Adam state and iteration 0; ignored (with a note) when the '
                          'checkpoint folder already has a checkpoint to resume (default: '
                          'random initialisation)')
    run.add_argument('--save_every', type=positive_int, default=1000,
                     help='save a checkpoint every N iterations (default 1000; also at the end '
                          'and on Ctrl-C/SIGTERM)')
    run.add_argument('--keep_checkpoints', type=positive_int, default=5,
                     help='how many recent checkpoints to keep (default 5)')
    run.add_argument('--keep_every', type=nonnegative_int, default=0,
                     help='also keep every checkpoint whose iteration is a multiple of N, '
                          'outside the --keep_checkpoints rotation (e.g. to average their '
                          'weights: tools/average_weights.py); a multiple of --save_every '
                          '(default 0: none)')
    run.add_argument('--divergence_factor', type=non_negative_float, default=10.0,
                     help='divergence guard: when the batch loss stays above F x the median '
                          'of the recent iterations for 5 iterations, roll back to the newest '
                          'checkpoint (held back from the spike) and go on with new batches; '
                          'at most 3 times a run, then stop (docs/training.md). 0 disables '
                          '(default 10)')
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
    run.add_argument('--memory_budget_mb', type=nonnegative_int, default=2048,
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
    perf.add_argument('--tile', type=tile_size, default=None,
                      help='testing and --input: derain images with a side larger than this '
                           'in tiles of this side (pixels, at least %d); 0 = always one '
                           'whole-image pass (default: automatic, whole images when they fit '
                           '--inference_memory_mb, else tiles sized to fit it; docs/tiling.md)'
                           % MIN_TILE)
    perf.add_argument('--tile_mode', choices=['exact', 'fast'], default='fast',
                      help='tiled inference: fast (SE statistics from one whole-image run '
                           'when the image fits the memory budget: within 0.0001 dB of a '
                           'whole-image pass; else two runs per tile: 0.003-0.45 dB, '
                           'depending on the model, measured) '
                           'or exact (equal to a whole-image pass up to float rounding, ~19 '
                           'passes) (default fast)')
    perf.add_argument('--tile_refine_passes', type=nonnegative_int, default=0,
                      help='fast tiled mode, images larger than the memory budget (SE '
                           'statistics from a first pass in which each tile uses its own): '
                           'N more statistics passes with the means fed, each ~1.2 '
                           'whole-image passes; 1 brings the output closer to a whole-image '
                           'pass, e.g. 51-55 dB -> 62-65 dB for the light model '
                           '(docs/tiling.md) (default 0)')
    perf.add_argument('--tile_overlap', type=nonnegative_int, default=None,
                      help='halo around each tile in pixels (default: 32 in fast mode, the '
                           "network's receptive-field radius, which makes tiling exact, in "
                           'exact mode)')
    perf.add_argument('--inference_memory_mb', type=nonnegative_int, default=0,
                      help='memory budget of testing and --input in MB: images whose '
                           'whole-image pass would need more are derained in tiles that fit '
                           '(default 0 = automatic: 4096, or 75%% of the memory available '
                           'when less)')
    add_session_flags(perf)

    export = parser.add_argument_group('export (docs/deploy.md)')
    export.add_argument('--export', choices=['savedmodel', 'onnx', 'litert'], default=None,
                        metavar='FORMAT',
                        help='export the model of --model or --checkpoint for other runtimes: '
                             'savedmodel (TensorFlow Serving), onnx (ONNX Runtime, OpenVINO) '
                             'or litert (TFLite); any image size, input BGR in [0, 1]; '
                             'checked against the graph on the demo pairs')
    export.add_argument('--export_dir', type=str, default=None,
                        help='the new or empty folder --export writes (the model and its '
                             'model_card.json)')
    return parser


def add_session_flags(group):
    """The TensorFlow session flags, shared by main.py and bench.py.

    ``utils.session_config`` reads the thread and XLA flags; ``precision.from_args``
    combines ``--precision`` and the older ``--mixed_precision`` into one precision.

    Args:
      group: argparse parser or argument group, extended in place.
    """
    group.add_argument('--intra_op_threads', type=thread_count, default=0,
                       help='TensorFlow intra-op threads, 0 to %d (default 0 = one per core)'
                            % MAX_THREADS)
    group.add_argument('--inter_op_threads', type=thread_count, default=0,
                       help='TensorFlow inter-op threads, 0 to %d (default 0 = automatic)'
                            % MAX_THREADS)
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
    parser = build_parser()
    args = parser.parse_args(argv)
    args.given = given_flags(argv)
    if args.phase == 'test' and not args.is_training and not args.is_testing:
        args.is_testing = True
    if args.test_dataset is None:
        if '{}' in args.test_path:
            args.test_dataset = 'Rain100L'
        else:
            args.test_dataset = os.path.basename(os.path.normpath(args.test_path)) or 'test'
    if args.is_training:
        _check_training_memory(parser, args)
    if args.tile and args.tile < SLOW_TILE:
        print('note: --tile %d is small: every tile is computed with a halo around it (32 '
              'pixels in fast mode, about 120 in exact mode), so this is slower than --tile '
              '512 or more (docs/tiling.md)' % args.tile)
    return args


def training_memory(args):
    """Estimated peak memory of a training step of the flags, in bytes (CPU, fp32).

    Scaled from the measured paper setting (``TRAIN_BYTES_PER_PIXEL``) by the pixels of a
    batch, the channels and the stages.
    """
    pixels = args.batch_size * args.patch_size ** 2
    scale = (args.channel_dim / 32.0) * (args.stages / 3.0)
    return TRAIN_BASE_BYTES + pixels * TRAIN_BYTES_PER_PIXEL * scale


def _check_training_memory(parser, args):
    """Refuse a batch whose training step cannot fit in this machine's memory (no GPU: on a
    GPU the activations live in its memory, and TensorFlow reports a clear error there)."""
    from machine import resources
    from console import quiet
    total = resources.physical_memory()
    need = training_memory(args)
    if total is None or need <= total or quiet.has_nvidia_device():
        return
    parser.error('--batch_size %d with --patch_size %d needs about %.0f GB of memory to '
                 'train (measured: 7 GB for 32 x 64 x 64), this machine has %.0f GB; lower '
                 '--batch_size or --patch_size' % (args.batch_size, args.patch_size,
                                                   need / 1e9, total / 1e9))


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
    """Checkpoint-folder suffix: '' for the paper's model and loss, else one tag per change
    (``checkpointing.default_folder`` names the folder with it)."""
    suffix = model_config(args).suffix()
    if args.edge_loss_weight != PAPER_EDGE_LOSS_WEIGHT:
        suffix += '_edge%g' % args.edge_loss_weight
    return suffix


def run_settings(args):
    """What is stored next to a checkpoint (remaen_settings.json)."""
    return {'model': model_config(args).to_dict(), 'edge_loss_weight': args.edge_loss_weight,
            'train_dataset': args.train_dataset, 'batch_size': args.batch_size,
            'patch_size': args.patch_size, 'lr': args.lr, 'lr_decay_step': args.lr_decay_step}


def print_configuration(args, title):
    """The flags of a run, one per line (the first lines of every training log)."""
    print('== ReMAEN %s ==' % title)
    for key in sorted(vars(args)):
        print('  %-18s %s' % (key, getattr(args, key)))
