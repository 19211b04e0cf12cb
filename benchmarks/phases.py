"""The benchmark's phases: each one measurement, run in its own process by ``bench.py``.

``run_infer_phase`` (the default network restored from a checkpoint, one image at ``--size``
and one 1024x1024, beside the reference convolution), ``run_train_phase`` (one training step
on batch 32 of 64x64 crops from the real data, and where a traced step spends its time),
``run_quality_phase`` (fp32 against bf16 PSNR on the demo pairs), ``run_train_command`` (the
real training command for a few iterations), ``run_large_photo_phase`` (``main.py --input`` on
a 4000x3000 photo through ``commands.run_commands``) and ``run_runtimes_phase`` (the exported
models in their runtimes, ``deploy``). ``PHASES`` maps ``--phase`` names to them; each returns a
dict of numbers. What the numbers mean: bench.py's docstring and docs/performance.md.
"""
import contextlib
import io
import os
import re
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

import commands
import settings
import utils
from console import errors
from machine import precision
from benchmarks.profiling import ConvProbe, count_flops, forward_macs, step_breakdown
from machine.resources import current_rss_mb, peak_rss_mb


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the project root
BREAKDOWN_TOP = 12  # op types listed by the training-step breakdown
DEFAULT_DATA = os.path.join(os.path.dirname(ROOT), 'shared', 'data', 'Rain100L-train')
# The fp32-vs-bf16 quality check: the shipped light checkpoint on the demo pairs.
BF16_CHECKPOINT = os.path.join(ROOT, 'checkpoints', 'ReMAEN_light')
BF16_DATA = os.path.join(ROOT, 'data', 'test', 'Demo')


LARGE_PHOTO_SOURCE = os.path.join(ROOT, 'data', 'real', '1.jpg')
LARGE_PHOTO_SIZE = {'full': (3000, 4000), 'quick': (120, 160)}


# ----------------------------------------------------------------------------- measuring
def run_infer_phase(args):
    """Time the restored network at ``args.size`` (one phase, in this process).

    Returns:
      dict: seconds (list), conv_gflops (list, measured around the runs), dilated_conv_gflops,
      macs (per image), peak_rss_mb, baseline_rss_mb.
    """
    import model
    config = model.ModelConfig()
    probe = ConvProbe(utils.flags_session_config(args, 'fp32'))
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
    from console import quiet
    tf = quiet.import_tf()
    import dataloader
    import model
    config = model.ModelConfig()
    probe = ConvProbe(utils.flags_session_config(args, 'fp32'))
    shape = [args.batch_size, args.patch_size, args.patch_size, model.IMAGE_CHANNELS]
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(0)
        rain = tf.placeholder(tf.float32, shape, name='rain')
        clean = tf.placeholder(tf.float32, shape, name='clean')
        # As training.build does: direct dilated convs where the kernels differentiate them.
        direct = precision.direct_dilation_trainable(utils.flags_session_config(args))
        net = model.build_train_graph(rain, clean, config, fused=args.fused,
                                      precision=args.precision, direct_dilation=direct)
        init = tf.global_variables_initializer()
        forward = count_flops(graph, scope='derainNet/')['macs']
        total = count_flops(graph)['macs']
    session = tf.Session(graph=graph, config=utils.flags_session_config(args))
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
    from console import quiet
    tf = quiet.import_tf()
    import checkpointing
    import model
    with tf.Graph().as_default():
        net = model.build_inference_graph(config, fused=args.fused, precision=args.precision)
        session = tf.Session(config=utils.flags_session_config(args))
        checkpointing.restore(session, prefix, model.model_variables())
    return session, net.images, net.output


def run_quality_phase(args):
    """PSNR of ``--bf16_checkpoint``'s outputs on the ``--bf16_data`` pairs (one phase).

    Returns:
      dict: names (list), psnr (list, paper protocol: ``metrics.evaluate`` on the float
      output clipped to [0, 1]), checkpoint (the prefix), precision.
    """
    import checkpointing
    import dataloader
    import metrics
    prefix = checkpointing.find(args.bf16_checkpoint)
    if prefix is None:
        raise checkpointing.CheckpointError('no checkpoint in --bf16_checkpoint %s'
                                          % args.bf16_checkpoint)
    config = checkpointing.stored_config(os.path.dirname(prefix))
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
    temporary folder and derained into it by ``commands.run_commands``, as ``main.py`` runs it (only
    ``--test_dir`` points into the temporary folder).

    Returns:
      dict: seconds (float, from the flags to the written results), peak_rss_mb,
      choice (the line saying whole or tiled, and why), size ('WxH').
    """
    height, width = large_photo_size(args)
    with tempfile.TemporaryDirectory() as folder:
        photo = os.path.join(folder, 'photo.jpg')
        cv2.imwrite(photo, cv2.resize(cv2.imread(LARGE_PHOTO_SOURCE), (width, height),
                                      interpolation=cv2.INTER_CUBIC))
        shown = io.StringIO()
        start = time.perf_counter()
        try:
            with contextlib.redirect_stdout(shown):
                commands.run_commands(settings.parse_args(
                    ['--input', photo, '--test_dir', os.path.join(folder, 'results')]))
        except Exception as exc:
            raise RuntimeError('main.py --input failed (%s):\n%s'
                               % (errors.reason(exc), shown.getvalue())) from exc
        seconds = time.perf_counter() - start
    choice = [line for line in shown.getvalue().splitlines()
              if line.startswith('Whole-image pass') or ': tiled, ' in line]
    return {'seconds': seconds, 'peak_rss_mb': peak_rss_mb(), 'size': '%dx%d' % (width, height),
            'choice': choice[0] if choice else None}


def run_runtimes_phase(args):
    """Export ``args.checkpoint`` in every format and time each runtime beside the TF graph
    on one ``args.size`` image (one phase, in this process).

    Returns:
      dict: ``seconds`` {runtime: median seconds}, ``export_mb`` {format: size in MB}.
    """
    import checkpointing
    import inference
    import model
    from deploy import export, runtimes
    config = model.ModelConfig()
    rng = np.random.default_rng(0)
    check = [('bench', rng.random((48, 64, 3), np.float32))]
    prefix = checkpointing.resolve(args.checkpoint, log=lambda line: None)
    derainer = inference.Derainer(prefix, config, utils.flags_session_config(args, 'fp32'), tile=0)
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


PHASES = {'infer': run_infer_phase, 'train': run_train_phase, 'quality': run_quality_phase,
          'large_photo': run_large_photo_phase, 'runtimes': run_runtimes_phase}
