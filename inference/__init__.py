"""Inference: restore a checkpoint, derain images (whole or tiled), measure and write results.

Modules: ``derainer`` (the ``Derainer`` and the one the flags describe), ``results`` (deraining
a set of pairs: PNGs, metrics, ``results.json``/``.csv``, strips, ``index.html``), ``tiling``
(images too large for one pass; docs/tiling.md). The names below are the package's interface;
import them from here. It asks ``checkpointing`` for checkpoints, ``model`` for the graph,
``metrics``, ``loading`` and ``pictures`` for measuring, reading and showing.
"""
from inference.derainer import TILE_MODES, Derainer, build_derainer, resolve_model
from inference.results import (METRIC_KEYS, RESULTS_JSON, Measurer, check_output_dir,
                               derain_pairs, make_output_dir, output_names, print_summary,
                               results_folder, write_results)

__all__ = ['METRIC_KEYS', 'RESULTS_JSON', 'TILE_MODES', 'Derainer', 'Measurer', 'build_derainer',
           'check_output_dir', 'derain_pairs', 'make_output_dir', 'output_names',
           'print_summary', 'resolve_model', 'results_folder', 'write_results']
