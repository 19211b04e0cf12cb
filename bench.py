"""Throughput benchmark of ReMAEN on this machine, as ratios to a plain convolution.

    python bench.py            # full run (a few minutes on a 2-core CPU)
    python bench.py --quick    # tiny sizes, for CI (< 1 minute)

ReMAEN costs about 1.66 million multiply-adds per pixel: ~185 3x3 convolutions with 32
channels over 3 stages. Its speed on a given machine is therefore bounded by how fast the
framework runs ONE such convolution, so everything is reported as a ratio to that:

* ``conv_gflops``: one plain 3x3 32->32 convolution (+ bias) on a 1x321x481x32 tensor;
  ``dilated_conv_gflops``: the same with rate 2 through ``slim.conv2d`` (the framework's own
  path: SpaceToBatchND + Conv2D + BatchToSpaceND).
* ``infer_*``: the full default model on one 321x481 image (Rain100 test size) restored from
  a checkpoint (random weights saved to a temporary checkpoint unless ``--checkpoint`` is
  given) through ``checkpoints.restore``, in a graph built once for any image size as
  ``main.Derainer`` does; ``infer_large_*`` the same on a 1024x1024 image.
* ``train_*``: one training step (forward + backward + Adam) on batch 32 of 64x64 crops fed
  through ``feed_dict`` from ``dataloader.TrainBatcher`` on the real training set, as
  ``main.train`` does; ``feed_fraction`` = time the step waits for the batcher / step time.
  Dilated convolutions are single ``Conv2D`` ops where the kernels differentiate them
  (oneDNN), as in training. The table then lists where one more traced step spends its time
  (``profiling.step_breakdown``: op types of the kernels that ran, their dtype, the casts;
  ``train_top_ops``, ``train_casts``).
* ``train_command_s``: the real training command (``main.py --is_training`` with the Rain100L
  campaign's settings but no evaluations, in this benchmark's batch, threads and precision)
  run for a few iterations; the median seconds per iteration it prints itself.
  ``train_command_ratio`` = that / ``train_step_s``: what the command adds to the bare step.
* ``*_bf16``: fp32 against bf16 (``precision.py``: oneDNN's bfloat16 rewrite, float32
  variables) in the same run: ``infer_speedup_bf16`` = fp32 time / bf16 time of the
  inference at ``--size``, ``train_speedup_bf16`` the same for the training step, and
  ``bf16_psnr_delta`` = the largest |PSNR(bf16 output) - PSNR(fp32 output)| (paper protocol,
  ``metrics.evaluate``) over the demo pairs (``--bf16_data``; quick: the first one) derained
  with ``--bf16_checkpoint``. Only on CPUs with bfloat16 instructions (``bf16_supported``);
  elsewhere bfloat16 would only be emulated, so nothing is timed and the three are null.
* ``large_photo_*``: ``python main.py --input photo.jpg`` with default flags, end to end
  (graph, restore, read, the automatic whole/tiled choice, derain, write), on a 4000x3000
  photo (``--large_photo_size``; ``data/real/1.jpg`` enlarged): ``large_photo_s`` seconds,
  ``large_photo_ratio`` = its seconds per pixel / those of the ``--size`` inference of the
  same run, ``peak_rss_mb_large_photo`` its process's peak memory; ``large_photo_choice`` the
  line saying whole or tiled (docs/tiling.md).
* ``runtime_*`` (``--runtimes on``, or ``only`` for this alone): the same weights exported
  (``deploy.export``) as a SavedModel, an ONNX model and a LiteRT model, each timed in its own
  runtime on one ``--size`` image beside the project's TensorFlow graph, interleaved in one
  process (median of ``--runtimes_repeats``); ``runtime_ratio`` = the TF graph's seconds /
  the runtime's (above 1: faster than the graph). docs/deploy.md.
* ``peak_rss_mb_*``: peak resident memory (VmHWM) of the process that ran each phase. Every
  phase runs in its own subprocess, so the numbers do not mix; they include the TensorFlow
  runtime (``baseline_rss_mb``: the same process after building and restoring, before the
  first run).

FLOPs are counted from the graph, not hard-coded (``count_flops``): every Conv2D,
DepthwiseConv2dNative and MatMul contributes (output elements) x (multiply-adds per output
element: kernel height x width x input channels, 1 input channel per output for depthwise,
the inner dimension for MatMul), 2 FLOPs per multiply-add, on a copy of the network built
with static shapes. Dilated convolutions that go through SpaceToBatchND are counted on the
padded phase images (<= 0.5% more than H x W for odd sizes). Training FLOPs are counted as
3 x the forward FLOPs of the batch (backward = gradient w.r.t. inputs + w.r.t. weights, each
the cost of the forward pass); the table also shows the count of the real training graph
(its Conv2DBackpropInput/Filter ops) as a check.

Timings on a shared machine are noisy, so each timed run is bracketed by measurements of the
plain convolution in the same process (interleaved), and every ratio uses the convolution
speed measured around its own runs; ``conv_gflops`` is the median over all of them. The
first run of every session is a warm-up and is excluded. The reference convolution always
runs in float32, whatever ``--precision`` says. The last line printed is one JSON object
with every number.
"""
import argparse
import contextlib
import datetime
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import cv2  # noqa: E402
import numpy as np  # noqa: E402

import errors  # noqa: E402
import main as cli  # noqa: E402
import precision  # noqa: E402
from profiling import (CONV_SHAPE, ConvProbe, count_flops, current_rss_mb,  # noqa: E402
                       forward_macs, machine_description, peak_rss_mb, step_breakdown)
from settings import add_session_flags, positive_int, str2bool  # noqa: E402

ROOT = os.path.dirname(os.path.abspath(__file__))
BREAKDOWN_TOP = 12  # op types listed by the training-step breakdown
DEFAULT_DATA = os.path.join(os.path.dirname(ROOT), 'shared', 'data', 'Rain100L-train')
# The fp32-vs-bf16 quality check: the shipped light checkpoint on the demo pairs.
BF16_CHECKPOINT = os.path.join(ROOT, 'checkpoints', 'ReMAEN_light')
BF16_DATA = os.path.join(ROOT, 'data', 'test', 'Demo')
# The fields of the final JSON line (all numbers; the test checks them).
RESULT_FIELDS = (
    'conv_gflops', 'dilated_conv_gflops', 'macs_per_pixel',
    'infer_s', 'infer_gflops', 'infer_ratio', 'peak_rss_mb_infer',
    'infer_large_s', 'infer_large_gflops', 'infer_large_ratio', 'peak_rss_mb_infer_large',
    'train_step_s', 'train_gflops', 'train_ratio', 'feed_fraction', 'peak_rss_mb_train',
    'train_command_s', 'train_command_ratio',
    'baseline_rss_mb')
# The fp32-vs-bf16 fields: a bool and three numbers, null where bf16 is not supported.
BF16_FIELDS = ('bf16_supported', 'infer_speedup_bf16', 'train_speedup_bf16', 'bf16_psnr_delta',
               'train_command_s_bf16', 'train_command_ratio_bf16')
# The large-photo phase: its numbers (null with --large_photo False), the photo it enlarges.
LARGE_PHOTO_FIELDS = ('large_photo_s', 'large_photo_ratio', 'peak_rss_mb_large_photo')
LARGE_PHOTO_SOURCE = os.path.join(ROOT, 'data', 'real', '1.jpg')
LARGE_PHOTO_SIZE = {'full': (3000, 4000), 'quick': (120, 160)}


def parse_size(text):
    """'HxW' -> (H, W) (argparse type)."""
    try:
        height, width = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError('expected a size HxW such as 321x481, got %r' % text)
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError('sizes must be positive, got %r' % text)
    return height, width


def build_parser():
    """The argument parser of ``bench.py``.

    Returns:
      argparse.ArgumentParser.
    """
    parser = argparse.ArgumentParser(
        prog='bench.py', description='ReMAEN throughput as ratios to one plain 3x3 '
        'convolution: inference, training step, peak memory (see the module docstring).')
    parser.add_argument('--quick', type=str2bool, nargs='?', const=True, default=False,
                        help='tiny sizes and one repeat, for CI (default False)')
    parser.add_argument('--size', type=parse_size, default=None,
                        help='inference size HxW (default 321x481; quick: 64x64)')
    parser.add_argument('--large_size', type=parse_size, default=None,
                        help='large inference size HxW (default 1024x1024; quick: 96x96)')
    parser.add_argument('--large_photo', type=str2bool, default=True,
                        help='time main.py --input on a large photo, end to end (default True)')
    parser.add_argument('--large_photo_size', type=parse_size, default=None,
                        help='that photo\'s size HxW (default 3000x4000, 12 MP; quick: '
                             '120x160)')
    parser.add_argument('--batch_size', type=positive_int, default=None,
                        help='training batch (default 32; quick: 2)')
    parser.add_argument('--patch_size', type=positive_int, default=None,
                        help='training crop side (default 64; quick: 32)')
    parser.add_argument('--repeats', type=positive_int, default=None,
                        help='timed runs at the inference size and timed training steps '
                             '(default 2 and 1; quick: 1); the large size is timed once')
    parser.add_argument('--train_steps', type=positive_int, default=None,
                        help='timed training steps after the warm-up (default 3; quick: 1)')
    parser.add_argument('--command_iterations', type=positive_int, default=None,
                        help='iterations of the real training command timed by the command '
                             'phase (default 8; quick: 3)')
    parser.add_argument('--data_path', type=str, default=DEFAULT_DATA,
                        help='training pairs for the batcher (default the shared '
                             'Rain100L-train; random images when it does not exist)')
    parser.add_argument('--checkpoint', type=str, default=None,
                        help='checkpoint to restore (default: random weights saved to a '
                             'temporary checkpoint)')
    parser.add_argument('--fused', type=str2bool, default=True,
                        help='optimised graph (default True); False = the reference '
                             'formulation, one slim.conv2d per convolution')
    add_session_flags(parser)
    parser.add_argument('--bf16_checkpoint', type=str, default=BF16_CHECKPOINT,
                        help='checkpoint of the fp32-vs-bf16 PSNR check (default the shipped '
                             'checkpoints/ReMAEN_light)')
    parser.add_argument('--bf16_data', type=str, default=BF16_DATA,
                        help='image pairs of the fp32-vs-bf16 PSNR check (default '
                             'data/test/Demo)')
    parser.add_argument('--bf16_pairs', type=positive_int, default=None,
                        help='how many of those pairs (default all; quick: 1)')
    parser.add_argument('--runtimes', choices=['off', 'on', 'only'], default='off',
                        help='also time the exported models in their runtimes (SavedModel, '
                             'onnxruntime, LiteRT) against the TF graph at --size; only: '
                             'nothing else (default off)')
    parser.add_argument('--runtimes_repeats', type=positive_int, default=3,
                        help='timed runs of each runtime (default 3)')
    parser.add_argument('--json_out', type=str, default=None,
                        help='also write the final JSON object to this file')
    # Internal: run one phase in this process and write its result to --phase_out.
    parser.add_argument('--phase', choices=['infer', 'train', 'quality', 'command',
                                            'large_photo', 'runtimes'],
                        default=None,
                        help=argparse.SUPPRESS)
    parser.add_argument('--warmup_size', type=parse_size, default=None, help=argparse.SUPPRESS)
    parser.add_argument('--phase_out', type=str, default=None, help=argparse.SUPPRESS)
    return parser


def parse_args(argv=None):
    """Parse ``argv`` and fill the size defaults of the full or quick mode."""
    args = build_parser().parse_args(argv)
    full = {'size': (321, 481), 'large_size': (1024, 1024), 'batch_size': 32,
            'patch_size': 64, 'repeats': 2, 'train_steps': 3, 'command_iterations': 8}
    quick = {'size': (64, 64), 'large_size': (96, 96), 'batch_size': 2, 'patch_size': 32,
             'repeats': 1, 'bf16_pairs': 1, 'train_steps': 1, 'command_iterations': 3}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


# ----------------------------------------------------------------------------- measuring
def _session_config(args, compute=None):
    """The session flags' ConfigProto, in ``compute`` precision (None = ``args.precision``)."""
    import utils
    return utils.session_config(args.intra_op_threads, args.inter_op_threads, args.xla,
                                precision=compute or args.precision)


def run_infer_phase(args):
    """Time the restored network at ``args.size`` (one phase, in this process).

    Returns:
      dict: seconds (list), conv_gflops (list, measured around the runs), dilated_conv_gflops,
      macs (per image), peak_rss_mb, baseline_rss_mb.
    """
    import model
    config = model.ModelConfig()
    probe = ConvProbe(_session_config(args, 'fp32'))
    session, images, output = _restored_network(args, args.checkpoint, config)
    baseline = current_rss_mb()
    rng = np.random.default_rng(0)
    height, width = args.size
    image = rng.random((1, height, width, model.IMAGE_CHANNELS), np.float32)
    warm = args.warmup_size or args.size
    session.run(output, {images: rng.random((1,) + tuple(warm) + (3,), np.float32)})
    seconds, conv = [], [probe.plain()]
    for _ in range(args.repeats):
        start = time.perf_counter()
        session.run(output, {images: image})
        seconds.append(time.perf_counter() - start)
        conv.append(probe.plain())
    dilated = probe.dilated()
    peak = peak_rss_mb()
    session.close()
    probe.close()
    return {'seconds': seconds, 'conv_gflops': conv, 'dilated_conv_gflops': dilated,
            'macs': forward_macs(config, (height, width), args.fused),
            'peak_rss_mb': peak, 'baseline_rss_mb': baseline}


def _training_pairs(data_path, folder, patch_size):
    """Pairs of ``data_path``; random image pairs written to ``folder`` when it is absent."""
    import dataloader
    if os.path.isdir(data_path):
        pairs, _ = dataloader.find_pairs(data_path, verbose=False)
        return pairs, data_path
    import cv2
    rng = np.random.default_rng(0)
    side = max(2 * patch_size, 96)
    for index in range(1, 5):
        clean = (rng.random((side, side, 3)) * 200).astype(np.uint8)
        cv2.imwrite(os.path.join(folder, 'norain-%d.png' % index), clean)
        cv2.imwrite(os.path.join(folder, 'rain-%d.png' % index),
                    np.minimum(clean.astype(np.int32) + 40, 255).astype(np.uint8))
    pairs, _ = dataloader.find_pairs(folder, verbose=False)
    return pairs, 'random images (%s not found)' % data_path


def run_train_phase(args):
    """Time training steps fed by the real TrainBatcher (one phase, in this process).

    Returns:
      dict: seconds (list of step times, batch fetch included), wait (list of seconds waited
      for the batcher), conv_gflops (list), forward_macs (per step), graph_macs (counted on
      the training graph), peak_rss_mb, data (str), breakdown (``step_breakdown`` of one
      more step), direct_dilation (bool).
    """
    import quiet
    tf = quiet.import_tf()
    import dataloader
    import model
    config = model.ModelConfig()
    probe = ConvProbe(_session_config(args, 'fp32'))
    shape = [args.batch_size, args.patch_size, args.patch_size, model.IMAGE_CHANNELS]
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(0)
        rain = tf.placeholder(tf.float32, shape, name='rain')
        clean = tf.placeholder(tf.float32, shape, name='clean')
        # As training.build does: direct dilated convs where the kernels differentiate them.
        direct = precision.direct_dilation_trainable(_session_config(args))
        net = model.build_train_graph(rain, clean, config, fused=args.fused,
                                      precision=args.precision, direct_dilation=direct)
        init = tf.global_variables_initializer()
        forward = count_flops(graph, scope='derainNet/')['macs']
        total = count_flops(graph)['macs']
    session = tf.Session(graph=graph, config=_session_config(args))
    session.run(init)
    with tempfile.TemporaryDirectory() as folder:
        pairs, data = _training_pairs(args.data_path, folder, args.patch_size)
        batcher = dataloader.TrainBatcher(pairs, args.patch_size, args.batch_size, seed=0,
                                          verbose=False)
        try:
            def step():
                start, waited = time.perf_counter(), batcher.wait_seconds
                rain_batch, clean_batch = batcher.next_batch()
                session.run(net.train_op, {rain: rain_batch, clean: clean_batch})
                return time.perf_counter() - start, batcher.wait_seconds - waited

            step()  # warm-up
            seconds, wait, conv = [], [], [probe.plain()]
            for _ in range(args.train_steps):
                took, waited = step()
                seconds.append(took)
                wait.append(waited)
                conv.append(probe.plain())
            rain_batch, clean_batch = batcher.next_batch()
            breakdown = step_breakdown(session, net.train_op,
                                       {rain: rain_batch, clean: clean_batch},
                                       top=BREAKDOWN_TOP)
        finally:
            batcher.close()
    peak = peak_rss_mb()
    session.close()
    probe.close()
    return {'seconds': seconds, 'wait': wait, 'conv_gflops': conv, 'forward_macs': forward,
            'graph_macs': total, 'peak_rss_mb': peak, 'data': data, 'breakdown': breakdown,
            'direct_dilation': direct}


def _restored_network(args, prefix, config):
    """``model.build_inference_graph`` in ``--precision``, restored from ``prefix``.

    Returns:
      (session, images placeholder [1, H, W, 3], output [1, H, W, 3] clipped to [0, 1]).
    """
    import quiet
    tf = quiet.import_tf()
    import checkpoints
    import model
    with tf.Graph().as_default():
        net = model.build_inference_graph(config, fused=args.fused, precision=args.precision)
        session = tf.Session(config=_session_config(args))
        checkpoints.restore(session, prefix, model.model_variables())
    return session, net.images, net.output


def run_quality_phase(args):
    """PSNR of ``--bf16_checkpoint``'s outputs on the ``--bf16_data`` pairs (one phase).

    Returns:
      dict: names (list), psnr (list, paper protocol: ``metrics.evaluate`` on the float
      output clipped to [0, 1]), checkpoint (the prefix), precision.
    """
    import checkpoints
    import dataloader
    import metrics
    prefix = checkpoints.find(args.bf16_checkpoint)
    if prefix is None:
        raise checkpoints.CheckpointError('no checkpoint in --bf16_checkpoint %s'
                                          % args.bf16_checkpoint)
    config = checkpoints.stored_config(os.path.dirname(prefix))
    pairs, _ = dataloader.find_pairs(args.bf16_data, limit=args.bf16_pairs, verbose=False)
    session, images, output = _restored_network(args, prefix, config)
    names, psnr = [], []
    for pair in pairs:
        rain, clean = dataloader.load_pair(pair)
        derained = session.run(output, {images: rain[np.newaxis]})[0]
        names.append(pair.name)
        psnr.append(metrics.evaluate(derained, clean)['psnr'])
    session.close()
    return {'names': names, 'psnr': psnr, 'checkpoint': prefix, 'precision': args.precision}


# The Rain100L campaign's command (docs/training.md) without its evaluations (--eval_every 0:
# a short run cannot amortise them; their cost is reported by the command on its own).
TRAIN_COMMAND_FLAGS = ('--summary_every', '50', '--save_every', '100', '--keep_checkpoints',
                       '2', '--sample_every', '1000', '--eval_every', '0', '--seed', '0')
ITERATION_TIME = re.compile(r'Iteration time: ([0-9.]+) s per iteration')


def run_train_command(args, folder, compute):
    """Time the real training command, ``main.py --is_training``, in a fresh process.

    Runs ``--command_iterations`` + 1 iterations of the campaign's command (batch, crops,
    threads and ``compute`` precision of this benchmark) into ``folder`` and reads the median
    seconds per iteration it prints (``training.IterationClock``: batch, step, fetches,
    progress, summaries, saves; the first iteration left out).

    Returns:
      dict: seconds (float), command (str).
    """
    data = args.data_path
    if not os.path.isdir(data):
        data = os.path.join(folder, 'command_data')
        os.makedirs(data, exist_ok=True)
        _training_pairs(args.data_path, data, args.patch_size)
    command = [sys.executable, os.path.join(ROOT, 'main.py'), '--is_training', 'True',
               '--train_dataset', 'bench', '--data_path', data,
               '--batch_size', str(args.batch_size), '--patch_size', str(args.patch_size),
               '--iterations', str(args.command_iterations + 1), '--precision', compute,
               '--intra_op_threads', str(args.intra_op_threads),
               '--inter_op_threads', str(args.inter_op_threads), '--xla', str(args.xla),
               '--checkpoint_dir', os.path.join(folder, 'command_' + compute, 'checkpoints'),
               '--logs_dir', os.path.join(folder, 'command_' + compute, 'logs'),
               '--sample_dir', os.path.join(folder, 'command_' + compute, 'samples')]
    command += list(TRAIN_COMMAND_FLAGS)
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True)
    found = ITERATION_TIME.search(done.stdout)
    if done.returncode or not found:
        raise RuntimeError('the training command failed (exit %d):\n%s'
                           % (done.returncode, done.stdout[-3000:]))
    shown = ' '.join(command[1:]).replace(ROOT + os.sep, '').replace(folder, '<tmp>')
    return {'seconds': float(found.group(1)), 'command': shown}


def large_photo_size(args):
    """(H, W) of the large photo: ``--large_photo_size`` or the full/quick default."""
    return args.large_photo_size or LARGE_PHOTO_SIZE['quick' if args.quick else 'full']


def run_large_photo_phase(args):
    """``main.py --input photo.jpg`` with default flags, end to end (one phase, this process).

    ``LARGE_PHOTO_SOURCE`` enlarged (bicubic) to ``large_photo_size`` is saved as a JPEG in a
    temporary folder and derained by ``main.main`` into it, as a user would run it (only
    ``--test_dir`` points into the temporary folder).

    Returns:
      dict: seconds (float, ``main.main`` from the flags to the written results), peak_rss_mb,
      choice (the line saying whole or tiled, and why), size ('WxH').
    """
    height, width = large_photo_size(args)
    with tempfile.TemporaryDirectory() as folder:
        photo = os.path.join(folder, 'photo.jpg')
        cv2.imwrite(photo, cv2.resize(cv2.imread(LARGE_PHOTO_SOURCE), (width, height),
                                      interpolation=cv2.INTER_CUBIC))
        shown = io.StringIO()
        start = time.perf_counter()
        with contextlib.redirect_stdout(shown):
            code = cli.main(['--input', photo, '--test_dir', os.path.join(folder, 'results')])
        seconds = time.perf_counter() - start
    if code:
        raise RuntimeError('main.py --input failed (exit %d):\n%s' % (code, shown.getvalue()))
    choice = [line for line in shown.getvalue().splitlines()
              if line.startswith('Whole-image pass') or ': tiled, ' in line]
    return {'seconds': seconds, 'peak_rss_mb': peak_rss_mb(), 'size': '%dx%d' % (width, height),
            'choice': choice[0] if choice else None}


def large_photo_summary(photo, infer, args):
    """The LARGE_PHOTO_FIELDS (None when the phase did not run) and the photo's size and
    choice; the ratio divides seconds per pixel by those of the ``--size`` inference."""
    if photo is None:
        return dict({key: None for key in LARGE_PHOTO_FIELDS}, large_photo_size=None,
                    large_photo_choice=None)
    pixels = float(np.prod(large_photo_size(args)))
    reference = float(np.median(infer['seconds'])) / float(np.prod(args.size))
    return {'large_photo_s': photo['seconds'], 'peak_rss_mb_large_photo': photo['peak_rss_mb'],
            'large_photo_ratio': photo['seconds'] / pixels / reference,
            'large_photo_size': photo['size'], 'large_photo_choice': photo['choice']}


def print_large_photo(results, args):
    """One line: the large photo's seconds, per-pixel ratio, peak memory and choice."""
    if results['large_photo_s'] is None:
        print('large photo: not measured (--large_photo False)')
        return
    print('large photo %s, main.py --input with default flags: %.1f s, %.2fx the seconds per '
          'pixel of the %dx%d inference, peak %.0f MB; %s'
          % ((results['large_photo_size'], results['large_photo_s'],
              results['large_photo_ratio']) + tuple(args.size)
             + (results['peak_rss_mb_large_photo'], results['large_photo_choice'])))


def run_runtimes_phase(args):
    """Export ``args.checkpoint`` in every format and time each runtime beside the TF graph
    on one ``args.size`` image (one phase, in this process).

    Returns:
      dict: ``seconds`` {runtime: median seconds}, ``export_mb`` {format: size in MB}.
    """
    import checkpoints
    import inference
    import model
    from deploy import export, runtimes
    config = model.ModelConfig()
    rng = np.random.default_rng(0)
    check = [('bench', rng.random((48, 64, 3), np.float32))]
    prefix = checkpoints.resolve(args.checkpoint, log=lambda line: None)
    derainer = inference.Derainer(prefix, config, _session_config(args, 'fp32'), tile=0)
    runners, sizes = {'tf_graph': derainer.run}, {}
    with tempfile.TemporaryDirectory() as folder:
        for fmt in export.FORMATS:
            target = os.path.join(folder, fmt)
            export.export(prefix, config, fmt, target, check)
            sizes[fmt] = sum(export.files_of(target).values()) / 1e6
            runners[fmt] = runtimes.load(fmt, target, args.intra_op_threads)
        image = rng.random(tuple(args.size) + (3,), np.float32)
        seconds = runtimes.time_runs(runners, image, args.runtimes_repeats)
    derainer.close()
    return {'seconds': seconds, 'export_mb': sizes}


def runtimes_summary(result):
    """``runtime_s``, ``runtime_ratio`` (TF graph seconds / runtime seconds), ``export_mb``."""
    if result is None:
        return {}
    seconds = result['seconds']
    return {'runtime_s': seconds, 'export_mb': result['export_mb'],
            'runtime_ratio': {name: seconds['tf_graph'] / value
                              for name, value in seconds.items()}}


def print_runtimes(results, args):
    """The runtime comparison's lines (nothing without ``--runtimes``)."""
    if 'runtime_s' not in results:
        return
    print('exported model, one %dx%d image (median of %d runs; ratio = TF graph time / this '
          'time):' % (args.size[0], args.size[1], args.runtimes_repeats))
    for name, seconds in results['runtime_s'].items():
        size = results['export_mb'].get(name)
        print('  %-10s %7.3f s  x%.2f%s' % (name, seconds, results['runtime_ratio'][name],
                                           '' if size is None else '  (%.1f MB)' % size))


PHASES = {'infer': run_infer_phase, 'train': run_train_phase, 'quality': run_quality_phase,
          'large_photo': run_large_photo_phase, 'runtimes': run_runtimes_phase}


# ----------------------------------------------------------------------------- driver
def _forwarded(args):
    """Flags handed to the phase subprocesses."""
    flags = ['--quick', str(args.quick), '--fused', str(args.fused),
             '--intra_op_threads', str(args.intra_op_threads),
             '--inter_op_threads', str(args.inter_op_threads), '--xla', str(args.xla),
             '--precision', args.precision, '--mixed_precision', 'False',
             '--batch_size', str(args.batch_size), '--patch_size', str(args.patch_size),
             '--repeats', str(args.repeats), '--train_steps', str(args.train_steps),
             '--command_iterations', str(args.command_iterations),
             '--data_path', args.data_path,
             '--checkpoint', args.checkpoint, '--bf16_checkpoint', args.bf16_checkpoint,
             '--bf16_data', args.bf16_data,
             '--runtimes_repeats', str(args.runtimes_repeats)]
    if args.bf16_pairs:
        flags += ['--bf16_pairs', str(args.bf16_pairs)]
    return flags


def run_phase(args, phase, folder, extra=()):
    """Run one phase in a fresh Python process; returns its result dict."""
    out = os.path.join(folder, '%s_%d.json' % (phase, len(os.listdir(folder))))
    command = [sys.executable, os.path.abspath(__file__), '--phase', phase,
               '--phase_out', out] + _forwarded(args) + list(extra)
    done = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True)
    notes = [line for line in done.stdout.splitlines() if line.startswith('note:')]
    for line in sorted(set(notes)):
        print(line)
    if done.returncode or not os.path.isfile(out):
        raise RuntimeError('bench phase %s failed (exit %d):\n%s'
                           % (phase, done.returncode, done.stdout[-3000:]))
    with open(out) as handle:
        return json.load(handle)


def make_checkpoint(folder):
    """Random (seeded) weights of the default network saved as ``folder/ReMAEN``."""
    import quiet
    tf = quiet.import_tf()
    import checkpoints
    import model
    import utils
    with tf.Graph().as_default():
        tf.set_random_seed(0)
        model.build_inference_graph()
        variables = model.model_variables()
        with tf.Session(config=utils.session_config()) as session:
            session.run(tf.variables_initializer(variables))
            return checkpoints.save_weights(session, variables, folder)


def bf16_unavailable(gpu=None):
    """Why fp32 and bf16 are not compared on this machine, or None when they are.

    Args:
      gpu: whether a GPU is visible (None = ``precision.gpu_available()``).

    Returns:
      None or a reason (str, one line).
    """
    if not precision.bf16_supported():
        return ('this CPU has neither avx512_bf16 nor amx_bf16, and timing emulated bf16 '
                'would measure nothing useful')
    if gpu is None:
        gpu = precision.gpu_available()
    if gpu:
        return 'a GPU is visible (GPUs compute in fp16, not bf16)'
    if not precision.onednn_enabled():
        return "TensorFlow's oneDNN ops are off (TF_ENABLE_ONEDNN_OPTS=0)"
    return None


def run_bf16_phases(args, folder, infer, train, command):
    """The extra phases of the fp32-vs-bf16 comparison.

    The main phases ran in ``args.precision`` (fp32 or bf16); the other precision is timed
    at ``--size``, on the training step and with the training command, and both derain the
    quality pairs.

    Returns:
      dict: ``infer``, ``train`` and ``command`` ({precision: phase result}), ``quality``
      (the same).
    """
    other = 'bf16' if args.precision == 'fp32' else 'fp32'
    runs = {'infer': {args.precision: infer}, 'train': {args.precision: train},
            'command': {args.precision: command}, 'quality': {}}
    runs['infer'][other] = run_phase(args, 'infer', folder,
                                     ['--size', '%dx%d' % tuple(args.size),
                                      '--precision', other])
    runs['train'][other] = run_phase(args, 'train', folder, ['--precision', other])
    runs['command'][other] = run_train_command(args, folder, other)
    for name in ('fp32', 'bf16'):
        runs['quality'][name] = run_phase(args, 'quality', folder, ['--precision', name])
    return runs


def bf16_summary(runs):
    """The BF16_FIELDS of the result from ``run_bf16_phases``'s dict (None = not run).

    Returns:
      dict: ``bf16_supported`` (this CPU's flags), the speedups (fp32 median time / bf16
      median time), the largest |PSNR difference| (dB), the bf16 training command's seconds
      per iteration and their ratio to the bf16 bench step; all but the first None when
      ``runs`` is None.
    """
    summary = dict.fromkeys(BF16_FIELDS)
    summary['bf16_supported'] = precision.bf16_supported()
    if runs is None:
        return summary
    for phase in ('infer', 'train'):
        times = {name: float(np.median(run['seconds'])) for name, run in runs[phase].items()}
        summary['%s_speedup_bf16' % phase] = times['fp32'] / times['bf16']
    fp32, bf16 = runs['quality']['fp32']['psnr'], runs['quality']['bf16']['psnr']
    summary['bf16_psnr_delta'] = float(np.max(np.abs(np.subtract(bf16, fp32))))
    summary['train_command_s_bf16'] = runs['command']['bf16']['seconds']
    summary['train_command_ratio_bf16'] = (summary['train_command_s_bf16']
                                           / float(np.median(runs['train']['bf16']['seconds'])))
    return summary


def print_bf16(summary, runs, reason, args):
    """One line: the fp32-vs-bf16 numbers, or why there are none."""
    if runs is None:
        print('bf16: not measured: %s; infer_speedup_bf16, train_speedup_bf16 and '
              'bf16_psnr_delta are null' % reason)
        return
    seconds = {phase: {name: float(np.median(run['seconds'])) for name, run in
                       runs[phase].items()} for phase in ('infer', 'train')}
    quality = runs['quality']['fp32']
    print('bf16 vs fp32: inference %dx%d %.3f -> %.3f s (%.2fx), train step %.3f -> %.3f s '
          '(%.2fx), largest |PSNR difference| %.4f dB over %d pairs (%s)'
          % (tuple(args.size) + (seconds['infer']['fp32'], seconds['infer']['bf16'],
                                 summary['infer_speedup_bf16'], seconds['train']['fp32'],
                                 seconds['train']['bf16'], summary['train_speedup_bf16'],
                                 summary['bf16_psnr_delta'], len(quality['psnr']),
                                 quality['checkpoint'])))


def print_bf16_training(summary, runs):
    """The bf16 training command's time and the bf16 step's breakdown (when measured)."""
    if runs is None:
        return
    print('bf16 training command: %.3f s per iteration = %.2f x the bf16 bench step'
          % (summary['train_command_s_bf16'], summary['train_command_ratio_bf16']))
    print_breakdown('bf16', runs['train']['bf16']['breakdown'])


def _infer_summary(result, pixels):
    seconds = float(np.median(result['seconds']))
    gflops = 2.0 * result['macs'] / seconds / 1e9
    conv = float(np.mean(result['conv_gflops']))
    return seconds, gflops, gflops / conv


def summarize(infer, large, train, command, args):
    """The final result dict from the phase results."""
    height, width = args.size
    infer_s, infer_gflops, infer_ratio = _infer_summary(infer, height * width)
    large_s, large_gflops, large_ratio = _infer_summary(large, np.prod(args.large_size))
    train_s = float(np.median(train['seconds']))
    train_flops = 3 * 2.0 * train['forward_macs']
    train_gflops = train_flops / train_s / 1e9
    conv_all = infer['conv_gflops'] + large['conv_gflops'] + train['conv_gflops']
    return {
        'conv_gflops': float(np.median(conv_all)),
        'dilated_conv_gflops': float(np.median([infer['dilated_conv_gflops'],
                                                large['dilated_conv_gflops']])),
        'macs_per_pixel': infer['macs'] / float(height * width),
        'infer_s': infer_s, 'infer_gflops': infer_gflops, 'infer_ratio': infer_ratio,
        'peak_rss_mb_infer': infer['peak_rss_mb'],
        'infer_large_s': large_s, 'infer_large_gflops': large_gflops,
        'infer_large_ratio': large_ratio, 'peak_rss_mb_infer_large': large['peak_rss_mb'],
        'train_step_s': train_s, 'train_gflops': train_gflops,
        'train_ratio': train_gflops / float(np.mean(train['conv_gflops'])),
        'feed_fraction': float(np.sum(train['wait']) / np.sum(train['seconds'])),
        'peak_rss_mb_train': train['peak_rss_mb'],
        'train_command_s': command['seconds'],
        'train_command_ratio': command['seconds'] / train_s,
        'train_top_ops': [[op, dtype, round(seconds, 4), count] for op, dtype, seconds, count
                          in train['breakdown']['ops']],
        'train_casts': train['breakdown']['casts'],
        'baseline_rss_mb': infer['baseline_rss_mb'],
    }


def print_breakdown(compute, breakdown):
    """Lines: where one traced training step in ``compute`` precision spent its time."""
    print('one traced %s training step: %.2f s wall, %.2f s of op time, %d nodes in bfloat16, '
          '%d casts taking %.3f s; op types by time:'
          % (compute, breakdown['wall_s'], breakdown['op_seconds'], breakdown['bfloat16_ops'],
             breakdown['casts'][0], breakdown['casts'][1]))
    for op, dtype, seconds, count in breakdown['ops']:
        print('  %-34s %-9s %7.3f s %5.1f%%  x%d' % (op, dtype or '-', seconds,
                                                   100.0 * seconds / breakdown['op_seconds'],
                                                   count))


def print_table(results, infer, large, train, args):
    size = '%dx%d' % tuple(args.size)
    large_size = '%dx%d' % tuple(args.large_size)
    batch = '%dx%dx%d' % (args.batch_size, args.patch_size, args.patch_size)
    line = '+-------------------------------+-----------+-----------+--------+-----------+'
    print(line)
    print('| %-29s | %9s | %9s | %6s | %9s |' % ('measurement', 'seconds', 'GFLOP/s',
                                                 'ratio', 'peak MB'))
    print(line)
    rows = [('plain conv 3x3 32->32', 2e-9 * np.prod(CONV_SHAPE[:3]) * 9 * 32 * 32
             / results['conv_gflops'], results['conv_gflops'], 1.0, None),
            ('dilated conv (rate 2, slim)', None, results['dilated_conv_gflops'],
             results['dilated_conv_gflops'] / results['conv_gflops'], None),
            ('inference %s' % size, results['infer_s'], results['infer_gflops'],
             results['infer_ratio'], results['peak_rss_mb_infer']),
            ('inference %s' % large_size, results['infer_large_s'],
             results['infer_large_gflops'], results['infer_large_ratio'],
             results['peak_rss_mb_infer_large']),
            ('train step %s' % batch, results['train_step_s'], results['train_gflops'],
             results['train_ratio'], results['peak_rss_mb_train'])]
    for label, seconds, gflops, ratio, peak in rows:
        print('| %-29s | %9s | %9.2f | %6.3f | %9s |' % (
            label, '-' if seconds is None else '%.3f' % seconds, gflops, ratio,
            '-' if peak is None else '%.0f' % peak))
    print(line)
    print('multiply-adds per pixel (graph count): %.0f; training graph count / forward = '
          '%.2f (3 assumed)' % (results['macs_per_pixel'],
                                train['graph_macs'] / float(train['forward_macs'])))
    print('feed fraction %.4f (batcher wait / step time; data: %s)'
          % (results['feed_fraction'], train['data']))
    print('plain conv GFLOP/s around each phase: %s'
          % ' '.join('%.1f' % v for v in infer['conv_gflops'] + large['conv_gflops']
                     + train['conv_gflops']))
    print('training command (main.py --is_training, same batch and precision): %.3f s per '
          'iteration = %.2f x the bench step (direct dilated convs: %s)'
          % (results['train_command_s'], results['train_command_ratio'],
             train['direct_dilation']))
    print_breakdown(args.precision, train['breakdown'])
    print('timed runs: %s %s, %s %s, train %s (s); baseline RSS %.0f MB'
          % (size, ' '.join('%.2f' % v for v in infer['seconds']), large_size,
             ' '.join('%.2f' % v for v in large['seconds']),
             ' '.join('%.2f' % v for v in train['seconds']), results['baseline_rss_mb']))


def main(argv=None):
    """Run the benchmark (or one internal phase); returns the process exit code (the
    benchmark's faults end in one line through ``errors.run``; a phase, run by the benchmark
    itself, keeps its traceback for its parent)."""
    args = parse_args(argv)
    args.precision = precision.from_args(args)
    if args.phase:
        result = PHASES[args.phase](args)
        with open(args.phase_out, 'w') as handle:
            json.dump(result, handle)
        return 0
    return errors.run(lambda: benchmark(args))


def benchmark(args):
    """The whole benchmark: its phases in subprocesses, the table, the JSON. Returns 0."""
    import tensorflow as tf2
    cpu, cores = machine_description()
    print('ReMAEN benchmark %s: %s, %d cores, TensorFlow %s, %s mode, fused=%s, threads '
          'intra=%d inter=%d, xla=%s, precision=%s'
          % (datetime.date.today().isoformat(), cpu, cores, tf2.__version__,
             'quick' if args.quick else 'full', args.fused, args.intra_op_threads,
             args.inter_op_threads, args.xla, args.precision))
    started = time.perf_counter()
    reason = bf16_unavailable()
    with tempfile.TemporaryDirectory() as folder:
        if args.checkpoint is None:
            args.checkpoint = make_checkpoint(folder)
        phases = os.path.join(folder, 'phases')
        os.makedirs(phases)
        runtimes = (run_phase(args, 'runtimes', phases, ['--size', '%dx%d' % tuple(args.size)])
                    if args.runtimes != 'off' else None)
        if args.runtimes == 'only':
            return _report_runtimes_only(args, runtimes, cpu, cores, tf2.__version__)
        infer = run_phase(args, 'infer', phases, ['--size', '%dx%d' % tuple(args.size)])
        # The large image is timed once; its warm-up pass (session start-up, graph
        # optimisation) runs on the small size, in the same graph.
        large = run_phase(args, 'infer', phases,
                          ['--size', '%dx%d' % tuple(args.large_size), '--repeats', '1',
                           '--warmup_size', '%dx%d' % tuple(args.size)])
        train = run_phase(args, 'train', phases)
        command = run_train_command(args, phases, args.precision)
        photo = (run_phase(args, 'large_photo', phases, ['--large_photo_size', '%dx%d'
                                                         % large_photo_size(args)])
                 if args.large_photo else None)
        bf16_runs = None if reason else run_bf16_phases(args, phases, infer, train,
                                                               command)
    results = summarize(infer, large, train, command, args)
    results.update(runtimes_summary(runtimes))
    results.update(bf16_summary(bf16_runs))
    results.update(large_photo_summary(photo, infer, args))
    print_table(results, infer, large, train, args)
    print_bf16(results, bf16_runs, reason, args)
    print_bf16_training(results, bf16_runs)
    print_large_photo(results, args)
    print_runtimes(results, args)
    results.update({'date': datetime.date.today().isoformat(), 'cpu': cpu, 'cores': cores,
                    'tensorflow': tf2.__version__, 'quick': args.quick, 'fused': args.fused,
                    'precision': args.precision, 'size': '%dx%d' % tuple(args.size),
                    'large_size': '%dx%d' % tuple(args.large_size),
                    'train_batch': '%dx%dx%d' % (args.batch_size, args.patch_size,
                                                  args.patch_size),
                    'total_s': time.perf_counter() - started})
    if args.json_out:
        with open(args.json_out, 'w') as handle:
            json.dump(results, handle, indent=2)
    print(json.dumps(results, sort_keys=True))
    return 0


def _report_runtimes_only(args, runtimes, cpu, cores, tf_version):
    """``--runtimes only``: the comparison's lines and its JSON line. Returns 0."""
    results = runtimes_summary(runtimes)
    print_runtimes(results, args)
    results.update({'date': datetime.date.today().isoformat(), 'cpu': cpu, 'cores': cores,
                    'tensorflow': tf_version, 'size': '%dx%d' % tuple(args.size)})
    if args.json_out:
        with open(args.json_out, 'w') as handle:
            json.dump(results, handle, indent=2)
    print(json.dumps(results, sort_keys=True))
    return 0


if __name__ == '__main__':
    sys.exit(main())
