"""Tiled passes: the tiles and their halos, the statistics sample, the exact and fast loops.

``tile_interiors`` / ``halo_crop`` cut an image into interiors with halos cropped at the border;
``sample_crops`` / ``sample_squeezes`` give the fast mode's pooled SE statistics;
``pass_halos`` / ``relative_cost`` / ``sample_cost`` say what each pass costs; ``derain_tiled``
(exact: one pass per SE point, then the output) and ``derain_fast`` (sample or statistics
pass, then the output) run a ``graph.TiledGraph`` over the tiles and stitch the interiors.
Asks ``graph`` for the receptive-field radii; numpy only (the session is passed in).
"""
import numpy as np

from inference.tiling.graph import receptive_field_radius, se_point_radii


# ----------------------------------------------------------------------------- tiles
def tile_interiors(height, width, tile):
    """Split an image into interiors of at most ``tile`` x ``tile`` pixels, of equal sizes.

    ``ceil(height / tile)`` rows and ``ceil(width / tile)`` columns of near-equal size (they
    differ by at most one pixel): no thin remainder tile, whose halo would cost more than
    its interior.

    Returns:
      list of (y0, y1, x0, x1) half-open boxes covering the image exactly once, row by row.
    """
    if tile < 1:
        raise ValueError('tile must be >= 1, got %d' % tile)
    rows, cols = _even_split(height, tile), _even_split(width, tile)
    return [(y0, y1, x0, x1) for y0, y1 in rows for x0, x1 in cols]


def _even_split(length, tile):
    """[(start, stop)]: ``ceil(length / tile)`` consecutive ranges of near-equal length."""
    count = -(-length // tile)
    edges = [length * k // count for k in range(count + 1)]
    return list(zip(edges[:-1], edges[1:]))


def halo_crop(box, halo, height, width):
    """The crop of the image around an interior, and the interior inside that crop.

    The halo is cropped at the image border (no padding), so border tiles see the same SAME
    zero padding as the whole image.

    Args:
      box: (y0, y1, x0, x1) interior in image coordinates.
      halo: pixels added on each side.
      height, width: image size.

    Returns:
      (crop, interior): crop = (cy0, cy1, cx0, cx1) in the image; interior = [top, left,
      height, width] of the box inside the crop (the ``interior`` feed).
    """
    y0, y1, x0, x1 = box
    cy0, cy1 = max(0, y0 - halo), min(height, y1 + halo)
    cx0, cx1 = max(0, x0 - halo), min(width, x1 + halo)
    return (cy0, cy1, cx0, cx1), [y0 - cy0, x0 - cx0, y1 - y0, x1 - x0]


# The statistics sample: at most SAMPLE_CROPS crops (more, smaller crops spread the sample
# over more of the image; each pays its halo), interiors of at least SAMPLE_MIN_INTERIOR.
SAMPLE_CROPS = 16
SAMPLE_MIN_INTERIOR = 64
# The plan uses a sample only when it covers at least this share of the image; below it the
# statistics pass runs every tile with its own means. 1.0: only the whole image (exact means).
# Partial samples, then one pass, measured on 2x pairs with a 10% sample (docs/tiling.md):
# 3.6-4.5 dB closer to the whole-image output than each-tile-its-own for the heavy model, but
# 17 dB further for the light model on one pair; no partial sample is better for both.
SAMPLE_MIN_FRACTION = 1.0


def sample_crops(height, width, pixels, halo, count=SAMPLE_CROPS):
    """Equal crops spread evenly over an image, of at most ``pixels`` pixels together.

    The whole image when it has at most ``pixels`` pixels (the statistics are then exact).
    Otherwise a grid of up to ``count`` crops of one size, each inside the image, centred in
    equal cells of the image; the interior of a crop is the crop without ``halo`` pixels on
    each side (along a side that spans the whole image, the whole side).

    Args:
      height, width: image size.
      pixels: sample size bound (crop pixels, halos included).
      halo: pixels between a crop's edge and its interior (at most a quarter of the crop's
        side, when ``pixels`` are too few for one crop with the full halo).
      count: most crops.

    Returns:
      (crops, interior): crops = list of (cy0, cy1, cx0, cx1) of one size; interior = [top,
      left, height, width] inside each crop (the ``interior`` feed).
    """
    if height * width <= pixels:
        return [(0, height, 0, width)], [0, 0, height, width]
    least = 2 * halo + SAMPLE_MIN_INTERIOR
    side = max(int((pixels / float(count)) ** 0.5), min(least, int(pixels ** 0.5)))
    halo = min(halo, side // 4)                   # a crop too small for both: half interior
    crop_h = min(height, side)
    crop_w = min(width, max(side, pixels // (count * crop_h)))
    number = int(max(1, min(count, pixels // (crop_h * crop_w))))
    rows = 1 if crop_h == height else int(min(number, max(1, round(
        (number * height / float(width)) ** 0.5))))
    cols = 1 if crop_w == width else max(1, number // rows)
    if crop_w == width:
        rows = number

    def starts(length, crop, cells):
        return [min(length - crop, max(0, int(round((k + 0.5) * length / cells - crop / 2.0))))
                for k in range(cells)]

    crops = [(y, y + crop_h, x, x + crop_w) for y in starts(height, crop_h, rows)
             for x in starts(width, crop_w, cols)]
    top = 0 if crop_h == height else halo
    left = 0 if crop_w == width else halo
    return crops, [top, left, crop_h - 2 * top, crop_w - 2 * left]


def sample_fraction(height, width, pixels, halo=None):
    """The share of the image that the interiors of ``sample_crops`` cover (1.0: all)."""
    crops, (_, _, inner_h, inner_w) = sample_crops(
        height, width, pixels, FAST_STATS_HALO if halo is None else halo)
    return len(crops) * inner_h * inner_w / float(height * width)


def sample_squeezes(session, graph, image, pixels, halo=None):
    """The K SE means of one image from a pooled sample of crops (``sample_crops``).

    Exact (the whole-image pass's means, up to float rounding) when the image has at most
    ``pixels`` pixels: one run of the plain network on the image, its interior sums divided
    by H * W); otherwise the means of one run of the pooled network (``build_tiled_graph``
    with ``pooled=True``) on the sample crops as one image (``PooledSqueeze``): an estimate
    from a part of the image, consistent through the K SE blocks.

    Args:
      session, graph: see ``derain_tiled``.
      image: [H, W, C_in] float32 in [0, 1].
      pixels: sample size bound (its memory is that of one pass over ``pixels`` pixels).
      halo: crop halo; None = FAST_STATS_HALO.

    Returns:
      list of K [1, C] float32 arrays.
    """
    halo = FAST_STATS_HALO if halo is None else halo
    height, width = image.shape[:2]
    crops, interior = sample_crops(height, width, pixels, halo)
    if len(crops) == 1 and interior == [0, 0, height, width]:
        # The whole image: the plain network's sums over it (no pooled network needed).
        sums = session.run(graph.local_sums, {graph.images: image[np.newaxis],
                                              graph.interior: interior})
        return [_mean_of_sums([part], height, width) for part in sums]
    if graph.sample_means is None:
        raise ValueError('a partial sample (%d of %d pixels) needs the pooled network: '
                         'build_tiled_graph(..., pooled=True)' % (pixels, height * width))
    batch = np.stack([image[y0:y1, x0:x1] for y0, y1, x0, x1 in crops])
    means = session.run(graph.sample_means, {graph.samples: batch, graph.interior: interior})
    return [np.asarray(m, np.float32) for m in means]


def _feed(graph, image, box, halo, squeezes):
    """feed_dict for one tile: its crop, its interior and the squeezes known so far."""
    height, width = image.shape[:2]
    (cy0, cy1, cx0, cx1), interior = halo_crop(box, halo, height, width)
    feed = {graph.images: image[np.newaxis, cy0:cy1, cx0:cx1], graph.interior: interior}
    feed.update(zip(graph.squeezes, squeezes))
    return feed


TILE_MODES = ('exact', 'fast')
# Fast mode halos, measured (docs/tiling.md): the last pass with the exact global means and a
# halo of 32 differs from the whole image by <= 5e-4 (8: up to 0.11, visible seams); the
# statistics pass with the same halo of 32 instead of 16 brings the heavy model's output
# 2-14 dB closer (its SE means must be within ~1%), for ~0.1 pass more, and both passes then
# run the same crops (the memory plan counts one crop).
FAST_OVERLAP = 32
FAST_STATS_HALO = 32


def default_overlap(config=None, mode='exact'):
    """The halo ``--tile_overlap`` defaults to: R for 'exact', min(R, FAST_OVERLAP) for 'fast'.

    Args:
      config: ModelConfig (None = the paper's model).
      mode: 'exact' or 'fast'.

    Returns:
      int, pixels.
    """
    radius = receptive_field_radius(config)
    return radius if mode == 'exact' else min(radius, FAST_OVERLAP)


def pass_halos(mode, overlap, point_radii=None, stats_halo=None, config=None,
               refine_passes=0, passes=None):
    """The halo of each pass over the tiles, as ``derain_tiled`` uses them.

    Args:
      mode: 'exact' (K + 1 passes) or 'fast' (2 + refine_passes passes).
      overlap, point_radii: see ``derain_tiled``; stats_halo, refine_passes: see
        ``derain_fast``.
      config: ModelConfig giving K when ``point_radii`` is None (None = the paper's model).
      passes: fast mode's statistics passes over the tiles (``statistics_passes``); None =
        1 + refine_passes.

    Returns:
      list of ints, one halo per pass over the tiles (the fast mode's pooled sample run is
      not a pass over the tiles: ``sample_cost``).
    """
    if mode == 'fast':
        stats_halo = min(overlap, FAST_STATS_HALO) if stats_halo is None else stats_halo
        passes = 1 + refine_passes if passes is None else passes
        return [stats_halo] * passes + [overlap]
    if point_radii is None:
        point_radii = [overlap] * len(se_point_radii(config))
    return [min(overlap, radius) for radius in point_radii] + [overlap]


def relative_cost(height, width, tile, halos):
    """Pixels the network evaluates, in whole-image passes (deterministic cost measure).

    Every pass counts as the full network on each crop pixel: exact for the fast mode (its
    statistics pass runs up to the last SE block, nearly all of the network), an upper bound
    for the exact mode, whose pass k stops at SE point k.

    Args:
      height, width: image size.
      tile: interior side.
      halos: the halo of each pass (``pass_halos``).

    Returns:
      float: sum over passes and tiles of the crop areas, divided by height * width.
    """
    total = 0
    for halo in halos:
        for box in tile_interiors(height, width, tile):
            (cy0, cy1, cx0, cx1), _ = halo_crop(box, halo, height, width)
            total += (cy1 - cy0) * (cx1 - cx0)
    return total / float(height * width)


def sample_cost(height, width, sample_pixels, halo=FAST_STATS_HALO):
    """The pooled sample run of the fast mode in whole-image passes (0 without a sample)."""
    if sample_pixels is None:
        return 0.0
    crops, _ = sample_crops(height, width, sample_pixels, halo)
    return sum((y1 - y0) * (x1 - x0) for y0, y1, x0, x1 in crops) / float(height * width)


def _tile_runs(session, graph, fetch, image, boxes, halo, squeezes, tick):
    """Run ``fetch`` on every tile; yields (box, value) after each run and calls ``tick()``."""
    for box in boxes:
        value = session.run(fetch, _feed(graph, image, box, halo, squeezes))
        tick()
        yield box, value


def _mean_of_sums(parts, height, width):
    """Global [1, C] float32 means from per-tile interior sums (accumulated in float64)."""
    total = None
    for part in parts:
        part = np.asarray(part, np.float64)
        total = part if total is None else total + part
    return (total / (height * width)).astype(np.float32)


def derain_tiled(session, graph, image, tile, overlap, point_radii=None, mode='exact',
                 progress=None, refine_passes=0, sample_pixels=None):
    """Derain one image tile by tile, in memory bounded by one (tile + 2 overlap)^2 crop.

    ``mode='exact'``: equal to one whole-image pass (< 1e-4) when ``overlap >= R``, at a cost
    of about K/2 + 1 whole passes (see the package docstring). ``mode='fast'``: two runs per
    tile (``derain_fast``), close to the whole-image pass but not equal (docs/tiling.md).

    Args:
      session: tf.Session of ``graph``'s tf.Graph with the weights restored.
      graph: TiledGraph from ``build_tiled_graph``.
      image: [H, W, C_in] float32 BGR in [0, 1].
      tile: interior side in pixels (>= 1).
      overlap: halo in pixels around each interior (R = ``receptive_field_radius`` is exact).
      point_radii: optional ``se_point_radii(config)``: exact pass k then uses the smaller halo
        min(overlap, radius of point k) (same result, less work). None = ``overlap`` always.
        The fast mode ignores it.
      mode: 'exact' or 'fast'.
      progress: optional callable ``progress(done, total)``, called after each tile run
        (``total`` = (K + 1) * tiles in exact mode; fast mode: see ``derain_fast``).
      refine_passes, sample_pixels: fast mode only, see ``derain_fast``.

    Returns:
      [H, W, C_in] float32, the derained image (NOT clipped, like the network's output).
    """
    if mode not in TILE_MODES:
        raise ValueError('mode must be one of %s, got %r' % (TILE_MODES, mode))
    if mode == 'fast':
        return derain_fast(session, graph, image, tile, overlap, progress=progress,
                           refine_passes=refine_passes, sample_pixels=sample_pixels)
    image = np.asarray(image, np.float32)
    height, width = image.shape[:2]
    _check_overlap(overlap)
    if point_radii is not None and len(point_radii) != len(graph.squeezes):
        raise ValueError('%d point radii for %d SE points' % (len(point_radii),
                                                               len(graph.squeezes)))
    boxes = tile_interiors(height, width, tile)
    tick = _Ticker(progress, (len(graph.sums) + 1) * len(boxes))
    squeezes = []
    for k, point_sum in enumerate(graph.sums):
        halo = overlap if point_radii is None else min(overlap, point_radii[k])
        runs = _tile_runs(session, graph, point_sum, image, boxes, halo, squeezes, tick)
        squeezes.append(_mean_of_sums((part for _, part in runs), height, width))
    return _stitch(session, graph, image, boxes, overlap, squeezes, tick)


def derain_fast(session, graph, image, tile, overlap, stats_halo=None, progress=None,
                refine_passes=0, sample_pixels=None):
    """Fast tiled mode: SE means for all K points at once, then one pass over the tiles.

    Statistics, with ``sample_pixels`` (the default plan's way):

    - the image has at most ``sample_pixels`` pixels (tiles were forced on an image that fits
      the memory budget): one pooled run on the whole image gives the exact K means
      (``sample_squeezes``); no statistics pass over the tiles;
    - else a pooled run on a sample of crops (``sample_crops``, at most ``sample_pixels``)
      estimates them, and one statistics pass runs every crop (halo ``stats_halo``) with
      those means fed: the interior sums of all K SE inputs, added over the tiles and
      divided by H * W, are the means used.

    With ``sample_pixels`` None (the plan's choice when the sample the budget allows would
    cover less than SAMPLE_MIN_FRACTION of the image, e.g. a 12 MP photo under 4 GB): the
    statistics pass runs the plain network on each crop, every SE block squeezing that
    crop's own means.

    Each optional refinement pass runs every crop again with the means fed and recomputes
    them from its sums. The last pass runs each crop (halo ``overlap``) with the K means fed
    and stitches the interiors, as the exact mode's last pass does. Accuracy: docs/tiling.md.

    Args:
      session, graph, image, tile: see ``derain_tiled``.
      overlap: halo of the last pass in pixels (>= 0; ``default_overlap(config, 'fast')``).
      stats_halo: halo of the sample crops and of the statistics passes; None =
        min(overlap, FAST_STATS_HALO).
      progress: optional ``progress(done, total)`` after each run (the pooled sample run
        counts as one; total = sample + (statistics passes + 1) * tiles).
      refine_passes: extra statistics passes (default 0).
      sample_pixels: pixels of the pooled sample (its memory is one pass over that many
        pixels; ``sample_pixels_for_budget``); None = no sample (see above).

    Returns:
      [H, W, C_in] float32, the derained image (not clipped).
    """
    image = np.asarray(image, np.float32)
    height, width = image.shape[:2]
    _check_overlap(overlap)
    stats_halo = pass_halos('fast', overlap, stats_halo=stats_halo)[0]
    _check_overlap(stats_halo)
    if refine_passes < 0:
        raise ValueError('refine_passes must be >= 0, got %d' % refine_passes)
    boxes = tile_interiors(height, width, tile)
    passes = statistics_passes(height, width, sample_pixels, refine_passes)
    tick = _Ticker(progress, (sample_pixels is not None) + (passes + 1) * len(boxes))
    fetch, squeezes = graph.local_sums, ()
    if sample_pixels is not None:
        squeezes = sample_squeezes(session, graph, image, sample_pixels, stats_halo)
        fetch = graph.sums
        tick()
    for _ in range(passes):
        parts = [part for _, part in _tile_runs(session, graph, fetch, image, boxes,
                                               stats_halo, squeezes, tick)]
        squeezes = [_mean_of_sums(point, height, width) for point in zip(*parts)]
        fetch = graph.sums
    return _stitch(session, graph, image, boxes, overlap, squeezes, tick)


def statistics_passes(height, width, sample_pixels, refine_passes=0):
    """Statistics passes over the tiles of the fast mode (0 when the sample is the image)."""
    exact = sample_pixels is not None and height * width <= sample_pixels
    return refine_passes + (0 if exact else 1)


def _stitch(session, graph, image, boxes, halo, squeezes, tick):
    """The last pass: every tile with all K squeezes fed, interiors stitched -> [H, W, C]."""
    output = np.full(image.shape, np.nan, np.float32)         # a missed pixel would show
    for (y0, y1, x0, x1), value in _tile_runs(session, graph, graph.output, image, boxes, halo,
                                              squeezes, tick):
        output[y0:y1, x0:x1] = value[0]
    return output


def _check_overlap(overlap):
    if overlap < 0:
        raise ValueError('tile overlap must be >= 0, got %d' % overlap)


class _Ticker(object):
    """Counts tile runs and reports ``progress(done, total)`` after each (no-op if None)."""

    def __init__(self, progress, total):
        self.progress, self.total, self.done = progress, total, 0

    def __call__(self):
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)
