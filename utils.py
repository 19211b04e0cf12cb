"""Small helpers shared by training, testing, deraining and benchmarks: the TensorFlow session
configuration and float-to-uint8 conversion. Checkpoints live in ``checkpointing/``.

TensorFlow is imported inside ``session_config`` through ``quiet.import_tf`` (importing this
module must not start TensorFlow before ``quiet.setup`` has silenced it).
"""
import numpy as np

from machine import precision as precision_lib
from console import quiet


def session_config(intra_op_threads=0, inter_op_threads=0, xla=False, precision='fp32'):
    """ConfigProto: GPU memory growth on, soft placement, thread counts, XLA, precision.

    ``0`` threads lets TensorFlow choose (one per core). GPU selection is left to
    ``CUDA_VISIBLE_DEVICES``; without a GPU everything runs on the CPU.

    Args:
      intra_op_threads, inter_op_threads: int >= 0.
      xla: bool, session-level XLA JIT.
      precision: a resolved precision (``precision.from_args``): 'bf16' turns on oneDNN's
        bfloat16 rewrite, 'fp32' and 'fp16' keep it off (fp16 lives in the graph).

    Returns:
      tf.ConfigProto.
    """
    tf = quiet.import_tf()
    config = tf.ConfigProto(allow_soft_placement=True,
                            intra_op_parallelism_threads=intra_op_threads,
                            inter_op_parallelism_threads=inter_op_threads)
    config.gpu_options.allow_growth = True
    if xla:
        config.graph_options.optimizer_options.global_jit_level = tf.OptimizerOptions.ON_1
    return precision_lib.apply_to_session_config(config, precision)


def flags_session_config(args, precision=None):
    """``session_config`` of parsed flags: ``--intra_op_threads``, ``--inter_op_threads``,
    ``--xla``, in ``precision`` (None = ``args.precision``, which must then be resolved:
    ``precision.from_args``)."""
    return session_config(args.intra_op_threads, args.inter_op_threads, args.xla,
                          precision=precision or args.precision)


def use_mixed_precision(requested):
    """``--mixed_precision``: honoured only where a GPU is visible, else a note and float32.

    float16 convolutions on a CPU are slower than float32 and gain nothing, and the CPU is
    all we can test on, so the CPU path stays the reference float32 graph. The same rule as
    ``--precision fp16`` (``precision.resolve_precision``).

    Returns:
      bool: build the float16 graph.
    """
    if not requested:
        return False
    return precision_lib.resolve_precision('fp16') == 'fp16'


def to_uint8(image):
    """Float image in [0, 1] (any range: clipped) -> uint8, ROUNDED (the release truncated)."""
    return np.clip(np.rint(np.asarray(image, np.float64) * 255.0), 0, 255).astype(np.uint8)
