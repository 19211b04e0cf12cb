"""Loading data: dataset layouts, image files, training batches and real rain layers.

Modules: ``discovery`` (the pairs of a folder in any supported layout, ``--input`` folders),
``images`` (reading and converting images, EXIF orientation, up-front file checks,
``write_image`` / ``atomic_write``), ``batching`` (``TrainBatcher``: seeded, resumable random
crops, prepared in a background thread), ``rainlayers`` (``--rain_layers``: a pair's rain
S = rainy - clean and its clipped pixels, composited onto clean backgrounds). The root's
``dataloader.py`` is the one namespace callers use for the first three. Asks ``console`` for
errors and progress only; no TensorFlow.
"""
