"""Where bf16 inference error comes from: PSNR of fp32, bf16 and fp32-with-bf16-weights outputs.

    python tools/bf16_error.py                          # the shipped light model, demo pairs
    python tools/bf16_error.py --model heavy --data data/test/DemoHeavy

For every pair of ``--data`` it derains the rainy image three ways with the same restored
weights and reports PSNR to the clean image (paper protocol, ``metrics.evaluate``):

  fp32        the reference float32 graph;
  bf16        the same graph in a session with oneDNN's bfloat16 rewrite (``--precision bf16``):
              weights and activations rounded to bfloat16 (8 significant bits);
  fp32_wq     the float32 graph with every weight rounded to bfloat16 once: the part of the
              bf16 difference that comes from the weights alone.

and the RMS difference of each output from the fp32 one, in 8-bit levels. docs/performance.md
explains what these numbers showed. Needs a CPU with ``avx512_bf16`` or ``amx_bf16`` (else
bf16 would only be emulated and the tool stops with one line).

TensorFlow (through ``model``) is imported inside ``main``, after ``quiet.setup`` has silenced
it: the one function-level import here.
"""
import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import checkpointing  # noqa: E402
import dataloader  # noqa: E402
from console import errors  # noqa: E402
import metrics  # noqa: E402
from machine import precision  # noqa: E402
from console import quiet  # noqa: E402
import utils  # noqa: E402

VARIANTS = ('fp32', 'bf16', 'fp32_wq')


def build_parser():
    """The tool's flags."""
    parser = argparse.ArgumentParser(prog='tools/bf16_error.py', description=__doc__.split(
        '\n')[0])
    parser.add_argument('--model', default='light',
                        help='a shipped model name or a checkpoint folder (default light)')
    parser.add_argument('--data', default=os.path.join(ROOT, 'data', 'test', 'Demo'),
                        help='image pairs with ground truth (default data/test/Demo)')
    parser.add_argument('--pairs', type=int, default=None, help='only the first N pairs')
    return parser


def derain_all(prefix, pairs, variant):
    """Outputs [H, W, 3] in [0, 1] of every pair with ``variant`` (one of VARIANTS)."""
    import model
    tf = quiet.import_tf()
    config = checkpointing.stored_config(os.path.dirname(prefix))
    with tf.Graph().as_default():
        net = model.build_inference_graph(config)
        variables = model.model_variables()
        rounded = [v.assign(tf.cast(tf.cast(v, tf.bfloat16), tf.float32)) for v in variables]
        compute = 'bf16' if variant == 'bf16' else 'fp32'
        with tf.Session(config=utils.session_config(precision=compute)) as session:
            checkpointing.restore(session, prefix, variables)
            if variant == 'fp32_wq':
                session.run(rounded)
            return [session.run(net.output, {net.images: dataloader.load_pair(pair)[0][None]})[0]
                    for pair in pairs]


def measure(prefix, pairs):
    """{variant: {'psnr': [...], 'rms_levels': [...]}} over ``pairs``."""
    cleans = [dataloader.load_pair(pair)[1] for pair in pairs]
    outputs = {variant: derain_all(prefix, pairs, variant) for variant in VARIANTS}
    result = {}
    for variant in VARIANTS:
        result[variant] = {
            'psnr': [metrics.evaluate(out, clean)['psnr']
                     for out, clean in zip(outputs[variant], cleans)],
            'rms_levels': [255.0 * float(np.sqrt(np.mean((out - ref) ** 2)))
                           for out, ref in zip(outputs[variant], outputs['fp32'])]}
    return result


def run(args):
    """Measure and print one line per pair, then the JSON object."""
    if not precision.bf16_supported():
        raise errors.UsageError('this CPU has neither avx512_bf16 nor amx_bf16: bf16 would only '
                                'be emulated; run this tool on a CPU with bfloat16')
    where = (checkpointing.shipped_model_folder(args.model)
             if args.model in checkpointing.SHIPPED_MODELS else args.model)
    prefix = checkpointing.resolve(where)
    pairs, _ = dataloader.find_pairs(args.data, limit=args.pairs, verbose=False)
    result = measure(prefix, pairs)
    print('%-10s %8s %8s %8s %10s %10s' % ('pair', 'fp32', 'bf16', 'fp32_wq', 'd_bf16',
                                           'd_wq'))
    for k, pair in enumerate(pairs):
        psnr = [result[v]['psnr'][k] for v in VARIANTS]
        print('%-10s %8.3f %8.3f %8.3f %+10.3f %+10.3f' % (pair.name, psnr[0], psnr[1], psnr[2],
                                                         psnr[1] - psnr[0], psnr[2] - psnr[0]))
    print(json.dumps({'checkpoint': prefix, 'pairs': [p.name for p in pairs], **result}))


def main(argv=None):
    """Parse, measure, print; returns the exit code (faults: one ``error:`` line)."""
    args = build_parser().parse_args(argv)
    quiet.setup(verbose=False)
    return errors.run(lambda: run(args))


if __name__ == '__main__':
    sys.exit(main())
