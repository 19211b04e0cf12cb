"""Training: the paper's recipe as named steps, its loop, guard, evaluation and cluster runs.

Modules: ``steps`` (``prepare``, ``build``, ``restore_or_init``, ``train``: data, graph,
checkpoint, the run as a whole), ``loop`` (iterations, saves, rollback), ``divergence`` (the
guard that judges each batch loss), ``evaluation`` (the per-stage curve, sample strips, batch
SSIM), ``distributed`` (TF_CONFIG clusters). ``train(args)`` is the package's interface (the
other names below are for tests and tools). It asks ``checkpointing`` for the folder,
``loading`` for batches and rain layers, ``auditing`` for the shared-background check,
``inference`` for evaluation and ``model`` (inside the functions, after ``quiet.setup``) for
the graph.
"""
from training.loop import IterationClock, loop, rollback
from training.steps import build, prepare, restore_or_init, train

__all__ = ['IterationClock', 'build', 'loop', 'prepare', 'restore_or_init', 'rollback', 'train']
