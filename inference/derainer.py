"""The Derainer: one restored network that derains images, whole or tiled.

``Derainer(prefix, config)`` builds the inference graph (``model.build_inference_graph``),
restores a checkpoint's weights (``checkpointing``) and derains float images in [0, 1], BGR,
H x W x 3, returning the output and the per-stage outputs; large images go through ``tiling``
(``--tile``, ``--inference_memory_mb``). ``build_derainer`` is the Derainer the command-line
flags describe (which checkpoint, which network, precision). TensorFlow is imported inside,
after ``quiet.setup``.
"""
import os

import numpy as np

import checkpointing
import settings
import utils
from console.errors import UsageError


TILE_MODES = ('exact', 'fast')


# ----------------------------------------------------------------------------- derainer
class Derainer(object):
    """A restored network that derains images of any size, whole or in tiles.

    By default every image gets one whole-image pass when its estimated peak memory fits the
    memory budget, else it is derained in tiles sized to fit it (``tiling.plan``). One line
    says which and why (``log``), whenever it differs from the previous image's.

    Args:
      prefix: checkpoint prefix.
      config: ModelConfig.
      session_config: tf.ConfigProto (None = ``utils.session_config()``).
      tile: None = automatic (above); 0 = whole-image passes always; N > 0 = tiles of N
        pixels for images with a side larger than N (smaller ones get one whole pass).
      tile_overlap: halo of the last tiled pass in pixels; None = ``tiling.default_overlap``
        of the mode (the receptive-field radius for 'exact', ``tiling.FAST_OVERLAP`` for
        'fast'). Below the radius the exact mode is approximate.
      refine_passes: fast mode, images larger than the budget (each tile its own SE
        statistics in the first pass): extra statistics passes over the tiles with the means
        fed (``tiling.derain_fast``), each about 1.2 whole passes (default 0).
      tile_mode: 'fast' (exact SE statistics when the image fits the budget, else two runs
        per tile, 0.003-0.45 dB from a whole-image pass depending on the model; see
        docs/tiling.md) or 'exact'
        (equal to a whole-image pass up to float rounding, about
        K/2 + 1 passes).
      precision: 'fp32', 'bf16' or 'fp16' (see ``model.remaen``; bf16 acts through
        ``session_config``; tiles always use the float32 graph).
      progress: optional callable ``progress(done, total)`` called after each tile run.
      memory_mb: memory budget of the process in MB; None = ``tiling.default_budget_mb()``
        (measured when the Derainer is made).
      log: callable receiving the line that says whole or tiled, and why (default print).

    Calling it with an HxWx3 float32 BGR image in [0, 1] returns the derained image,
    HxWx3 float32 clipped to [0, 1]; ``derain(image, stages=True)`` also returns the
    per-stage outputs (a list, stage 1 first; None entries for tiled images, whose
    intermediate stages are not computed as whole images).
    """

    def __init__(self, prefix, config, session_config=None, tile=None, tile_overlap=None,
                 tile_mode='fast', precision='fp32', progress=None, memory_mb=None,
                 log=print, refine_passes=0):
        import model
        from console import quiet
        from inference import tiling
        tf = quiet.import_tf()
        self._check_tiling(config, tile, tile_overlap, tile_mode, refine_passes)
        self.config, self.tile, self.tile_mode = config, tile, tile_mode
        self.refine_passes = refine_passes
        self.tile_overlap, self.progress, self.log = tile_overlap, progress, log
        self.memory_mb = tiling.default_budget_mb() if memory_mb is None else memory_mb
        self.point_radii = tiling.se_point_radii(config)
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.net = model.build_inference_graph(config, precision=precision)
            self.session = tf.Session(config=session_config or utils.session_config())
            checkpointing.restore(self.session, prefix, model.model_variables())
        self.prefix, self._tiled, self._said = prefix, None, None

    @staticmethod
    def _check_tiling(config, tile, overlap, mode='exact', refine_passes=0):
        """UsageError for a bad tiling setting; a note when exact tiling is approximate."""
        from inference import tiling
        if mode not in TILE_MODES:
            raise UsageError('--tile_mode must be one of %s, got %r' % ('|'.join(TILE_MODES),
                                                                         mode))
        if (tile is not None and tile < 0) or (overlap is not None and overlap < 0):
            raise UsageError('--tile and --tile_overlap must be >= 0 (got %s and %s)'
                             % (tile, overlap))
        if refine_passes < 0:
            raise UsageError('--tile_refine_passes must be >= 0, got %d' % refine_passes)
        radius = tiling.receptive_field_radius(config)
        if mode == 'exact' and overlap is not None and overlap < radius:
            print('note: --tile_overlap %d is below the receptive-field radius %d: tiled '
                  'results are approximate (omit --tile_overlap for exact tiling)'
                  % (overlap, radius))

    @property
    def tiled(self):
        """The tile graphs (``tiling.build_tiled_graph``), added to this graph at first use."""
        if self._tiled is None:
            from inference import tiling
            with self.graph.as_default():
                # Same graph, same variables: the restore above serves both.
                self._tiled = tiling.build_tiled_graph(self.config)
        return self._tiled

    def run(self, image):
        """One network pass on a whole HxWx3 image (float32 in [0, 1])."""
        return self.session.run(self.net.output, {self.net.images: image[np.newaxis]})[0]

    def run_stages(self, image):
        """Whole-image pass returning every stage's clipped output, stage 1 first."""
        values = self.session.run(self.net.stage_outputs, {self.net.images: image[np.newaxis]})
        return [v[0] for v in values]

    def plan(self, image):
        """How ``image`` ([H, W, C]) is derained: a ``tiling.Plan`` (whole or tiled, and why)."""
        from inference import tiling
        height, width = image.shape[:2]
        return tiling.plan(height, width, self.memory_mb, self.config, self.tile,
                           self.tile_mode, self.tile_overlap, self.refine_passes)

    def uses_tiles(self, image):
        """True when ``image`` ([H, W, C]) goes through the tiled path."""
        return self.plan(image).tiled

    def derain(self, image, stages=False):
        """Derain one image; with ``stages`` also return the per-stage outputs (see class)."""
        plan = self.plan(image)
        if plan.line != self._said:
            self.log(plan.line)
            self._said = plan.line
        if plan.tiled:
            from inference import tiling
            output = np.clip(tiling.derain_tiled(
                self.session, self.tiled, image, plan.tile, plan.overlap, self.point_radii,
                mode=plan.mode, progress=self.progress, sample_pixels=plan.sample_pixels,
                refine_passes=plan.refine_passes),
                0.0, 1.0)
            per_stage = [None] * (self.config.stages - 1) + [output]
        else:
            per_stage = self.run_stages(image)
            output = per_stage[-1]
        return (output, per_stage) if stages else output

    def __call__(self, image):
        return self.derain(image)

    def close(self):
        self.session.close()


# ----------------------------------------------------------------------------- from flags
def resolve_model(args):
    """The checkpoint prefix and ModelConfig of parsed flags (deraining, testing, export).

    A shipped model (``--model``, or ``--input`` alone) without network flags uses the
    architecture stored next to it; any other checkpoint must match the network flags.

    Returns:
      (prefix, config).
    """
    prefix = checkpointing.resolve_args(args)
    folder = os.path.dirname(prefix)
    given = getattr(args, 'given', set())
    if checkpointing.is_shipped(prefix) and not set(checkpointing.NETWORK_FLAGS) & given:
        config = checkpointing.stored_config(folder, settings.model_config(args))
    else:
        config = settings.model_config(args)
        checkpointing.check_settings(folder, config)
    return prefix, config


def build_derainer(args, progress=None):
    """The Derainer of parsed flags: checkpoint resolved and checked against the flags
    (``resolve_model``). ``args.precision`` must be resolved (``precision.from_args``).
    """
    prefix, config = resolve_model(args)
    print('Restoring %s' % prefix)
    return Derainer(
        prefix, config, utils.flags_session_config(args),
        tile=args.tile, tile_overlap=args.tile_overlap, tile_mode=args.tile_mode,
        precision=args.precision, progress=progress,
        memory_mb=args.inference_memory_mb or None, refine_passes=args.tile_refine_passes)
