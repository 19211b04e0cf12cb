"""The data API of ReMAEN in one namespace: ``import dataloader`` and use ``dataloader.X``.

The code lives in three modules, one idea each:

- ``discovery``: dataset folders and the (rainy, clean) pairs in them (``find_pairs``,
  ``resolve_dataset_dir``, ``Pair``, ``DataError``, ``natural_key``, ``IMAGE_EXTENSIONS``),
  and the photos of an ``--input`` folder (``folder_images``);
- ``images``: decoding files to float32 BGR in [0, 1] (EXIF orientation applied), splitting
  side-by-side pairs, size checks, the header size reader and the up-front file checks
  (``read_image``, ``load_pair``, ``image_size``, ``check_pairs``, ``DataWarning``,
  ``reset_warnings``);
- ``batching``: random crops and the background ``TrainBatcher``.

Every user-facing problem raises ``DataError`` with a one-line message naming the path and
what to do. None of these modules imports TensorFlow.
"""
from loading.batching import TrainBatcher, crop_at, random_crop  # noqa: F401
from loading.discovery import (  # noqa: F401
    CLEAN_DIR_NAMES, IMAGE_EXTENSIONS, RAIN_DIR_NAMES, DataError, Pair, find_pairs,
    folder_images, image_names, natural_key, resolve_dataset_dir)
from loading.images import (  # noqa: F401
    DataWarning, check_pairs, decode, image_size, load_pair, load_raw_pair, pair_size,
    read_image, reset_warnings, to_float)
