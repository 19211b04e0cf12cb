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
  given) through ``checkpointing.restore``, in a graph built once for any image size as
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
* ``*_bf16``: fp32 against bf16 (``machine/precision.py``: oneDNN's bfloat16 rewrite, float32
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

This module is the command line and the driver (each phase in a subprocess, the bf16
comparison); the phases are ``benchmarks.phases``, the fields and the table
``benchmarks.report``.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from benchmarks.phases import (BF16_CHECKPOINT, BF16_DATA, DEFAULT_DATA, PHASES,  # noqa: E402
                               ROOT, large_photo_size, run_train_command)
from benchmarks.report import (_report_runtimes_only, bf16_summary,  # noqa: E402
                               large_photo_summary, print_bf16, print_bf16_training,
                               print_large_photo, print_runtimes, print_table, runtimes_summary,
                               summarize)
from console import errors  # noqa: E402
from machine import precision  # noqa: E402
from machine.resources import machine_description  # noqa: E402
from settings import add_session_flags, positive_int, str2bool  # noqa: E402


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
    from console import quiet
    tf = quiet.import_tf()
    import checkpointing
    import model
    import utils
    with tf.Graph().as_default():
        tf.set_random_seed(0)
        model.build_inference_graph()
        variables = model.model_variables()
        with tf.Session(config=utils.session_config()) as session:
            session.run(tf.variables_initializer(variables))
            return checkpointing.save_weights(session, variables, folder)


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


if __name__ == '__main__':
    sys.exit(main())
