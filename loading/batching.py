"""Training batches: random crops of (rainy, clean) pairs, made by a background thread.

``TrainBatcher`` decodes every training image once, keeps the set in memory when it fits the
memory budget (stored in the file's own dtype: a uint8 image costs 1 byte per sample; crops are
converted to float32 on the fly) and otherwise reads images lazily from disk for each crop.
A daemon thread fills a queue with ready batches so the training loop rarely waits.
This module uses numpy, OpenCV and threads only (no TensorFlow).
"""
import collections
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from loading import images
from loading.discovery import DataError


def random_crop(rain, clean, patch_size, rng, flip=False):
    """The same random square crop of a rain and a clean image.

    Every offset 0..H-P (rows) and 0..W-P (columns) is reachable; an image exactly the patch
    size gives the whole image. Draws three uniform numbers from ``rng`` (row, column, flip
    coin), so a seeded rng gives a deterministic sequence.

    Args:
      rain: [H, W, C] array.
      clean: [H, W, C] array of the same H, W, or None.
      patch_size: P, side of the crop.
      rng: numpy.random.Generator.
      flip: mirror both crops horizontally with probability 1/2.

    Returns:
      (rain_patch [P, P, C], clean_patch [P, P, C] or None): views of the inputs.

    Raises:
      ValueError: the image is smaller than P or the two sizes differ.
    """
    return crop_at(rain, clean, patch_size, rng.random(3), flip)


def crop_at(rain, clean, patch_size, draws, flip=False):
    """The crop of ``random_crop`` for given uniform draws ``(u_row, u_col, u_flip)`` in [0, 1).

    The row offset is floor(u_row * (H - P + 1)), i.e. uniform over 0..H-P; likewise columns;
    the crops are mirrored when ``flip`` and u_flip < 0.5.
    """
    height, width = rain.shape[:2]
    if clean is not None and clean.shape[:2] != (height, width):
        raise ValueError('rain %s and clean %s sizes differ' % (rain.shape, clean.shape))
    if height < patch_size or width < patch_size:
        raise ValueError('image %dx%d is smaller than the patch size %d'
                         % (width, height, patch_size))
    top = min(int(draws[0] * (height - patch_size + 1)), height - patch_size)
    left = min(int(draws[1] * (width - patch_size + 1)), width - patch_size)
    rain = rain[top:top + patch_size, left:left + patch_size]
    if clean is not None:
        clean = clean[top:top + patch_size, left:left + patch_size]
    if flip and draws[2] < 0.5:
        rain = rain[:, ::-1]
        clean = None if clean is None else clean[:, ::-1]
    return rain, clean


class _Failure(object):
    """An exception raised in the worker thread, handed to the consumer through the queue."""

    def __init__(self, exc):
        self.exc = exc


class TrainBatcher(object):
    """Random training batches produced by a background daemon thread.

    Each batch holds ``batch_size`` crops, each from a uniformly drawn training pair, the same
    crop in the rain and the clean image, optionally mirrored. Images are decoded once and kept
    in memory (in their stored dtype) when the set fits ``memory_budget_mb``. Otherwise images
    are read from disk when a crop needs them (decoded in parallel threads; as many as fit the
    budget are kept after their first use). With ``seed`` given the batch sequence is
    deterministic and identical in both modes: batch k (counted from 0 over the whole run)
    draws from its own generator ``numpy.random.default_rng([seed, k])`` the B pair indices,
    then B x 3 uniform numbers (row, column, flip; see ``crop_at``). A batcher started at
    ``start=k`` (a training run resumed at iteration k) therefore serves exactly the batches
    k, k+1, ... of an uninterrupted run, instead of the first batches again.

    With ``layers`` (a ``rainlayers.LayerSet``, ``--rain_layers``) the pairs are clean
    backgrounds: the rainy crop is the clean crop with the rain of a layer crop laid on it
    (``LayerSet.rain_for``). The same generator then draws, after the crops above, B layer
    indices and B x 3 more uniform numbers (``LayerSet.draw``), so the layer crops continue
    across resumes as the background crops do.

    Attributes:
      wait_seconds: total time next_batch spent blocked waiting for the worker.
      batches_served: number of batches returned by next_batch.
      in_memory: whether the whole decoded set is held in memory.
      nbytes: bytes of decoded images held in memory.
    """

    def __init__(self, pairs, patch_size, batch_size, flip=False, seed=None,
                 memory_budget_mb=2048, prefetch=8, verbose=True, decode_threads=None,
                 start=0, layers=None):
        """Validate and (when it fits) decode the training set, then start the worker.

        Args:
          pairs: list of Pair with ground truth.
          patch_size: side P of the square crops.
          batch_size: crops per batch B.
          flip: random horizontal flips (off in the paper).
          seed: int seed of the crop sampler, or None for a random one.
          memory_budget_mb: keep the decoded images in memory when they need at most this many
            MB (stored dtype: 1 byte per sample for 8-bit images); 0 = always read from disk.
          prefetch: number of ready batches the queue holds.
          verbose: print the mode and show a progress bar while decoding.
          decode_threads: threads decoding images (default min(8, CPU count)).
          start: index of the first batch served (the iteration a resumed run starts at);
            with a ``seed``, batch k is the same whatever ``start`` the batcher began at.
          layers: None, or a ``rainlayers.LayerSet`` whose rain is laid on the clean crops
            (then only the pairs' clean images are used).

        Raises:
          DataError: no pairs, pairs without ground truth, unreadable images, size mismatches,
            images smaller than the patch.
        """
        if patch_size < 1 or batch_size < 1 or prefetch < 1:
            raise ValueError('patch_size, batch_size and prefetch must be >= 1')
        if start < 0:
            raise ValueError('start must be >= 0, got %r' % (start,))
        self.pairs = list(pairs)
        if not self.pairs:
            raise DataError('no training pairs were given; check the training folder')
        for pair in self.pairs:
            if pair.clean_path is None:
                raise DataError('training needs ground truth but {} has no clean partner; use a '
                                'folder of rain/clean pairs for training'.format(pair.rain_path))
        self.patch_size = int(patch_size)
        self.batch_size = int(batch_size)
        self.flip = bool(flip)
        self.seed = seed
        self.start = int(start)
        self.layers = layers
        self.wait_seconds = 0.0
        self.batches_served = 0
        self.nbytes = 0
        self.in_memory = False
        self._verbose = verbose
        self._budget = max(float(memory_budget_mb), 0.0) * 2 ** 20
        self._decoded = {}        # path -> (raw, scale); filled up to the budget
        self._lock = threading.Lock()
        self._entries = None      # raw pair entries when the whole set is in memory
        self._error = None
        self._closed = False
        self._pool = ThreadPoolExecutor(decode_threads or min(8, os.cpu_count() or 1),
                                        thread_name_prefix='TrainBatcher-decode')
        try:
            estimate = self._estimate_bytes()
            if estimate <= self._budget:
                self._decode_all()
            else:
                self._validate_headers()
                if verbose:
                    print('Training set: {} pairs, ~{:.0f} MB decoded > memory budget {:.0f} '
                          'MB: reading images from disk when needed (slower)'
                          .format(len(self.pairs), estimate / 2 ** 20, self._budget / 2 ** 20))
        except BaseException:
            self._pool.shutdown(wait=False)
            raise
        if self.in_memory:
            self._pool.shutdown(wait=False)
            self._pool = None

        self._queue = queue.Queue(maxsize=int(prefetch))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='TrainBatcher', daemon=True)
        self._thread.start()

    # -- set-up ------------------------------------------------------------------------------

    def _paths(self):
        """Unique files to decode (Rain1400 ground truths and side-by-side files count once)."""
        paths = collections.OrderedDict()
        for pair in self.pairs:
            paths[pair.rain_path] = None
            paths[pair.clean_path] = None
        return list(paths)

    def _estimate_bytes(self):
        """Bytes the decoded set needs (headers; unknown formats estimated from known ones)."""
        sizes = [images.image_size(p) for p in self._paths()]
        known = [h * w * 3 * b for h, w, b in (s for s in sizes if s)]
        unknown = sum(1 for s in sizes if s is None)
        if unknown and not known:
            raw, _ = images.decode(self._paths()[0])
            known = [raw.nbytes]
        mean = sum(known) / float(len(known))
        return sum(known) + unknown * mean

    def _decode_cached(self, path):
        """Decode ``path`` once; keep it while the memory budget allows. Thread-safe."""
        hit = self._decoded.get(path)
        if hit is not None:
            return hit
        entry = images.decode(path)
        with self._lock:
            if path not in self._decoded and self.nbytes + entry[0].nbytes <= self._budget:
                self._decoded[path] = entry
                self.nbytes += entry[0].nbytes
        return entry

    def _load_entry(self, index, check_half=False):
        """(rain raw, rain scale, clean raw, clean scale) of pair ``index``, validated."""
        pair = self.pairs[index]
        entry = images.load_raw_pair(pair, self._decode_cached, check_half=check_half)
        self._check_patch(pair, entry[0].shape)
        return entry

    def _decode_all(self):
        """Decode and validate every pair (in parallel); in memory if all fit the budget."""
        from console.progress import Progress
        entries = []
        with Progress(len(self.pairs), 'decoding training images', unit='pair',
                      enabled=self._verbose) as bar:
            for entry in self._pool.map(lambda i: self._load_entry(i, check_half=True),
                                        range(len(self.pairs))):
                entries.append(entry)
                bar.update(1)
        self.in_memory = all(p in self._decoded for p in self._paths())
        if self.in_memory:
            self._entries = entries
        if self._verbose:
            if self.in_memory:
                print('Training set: {} pairs, {:.0f} MB decoded, kept in memory'
                      .format(len(self.pairs), self.nbytes / 2 ** 20))
            else:
                print('Training set: {} pairs exceed the memory budget {:.0f} MB: keeping '
                      '{:.0f} MB in memory, reading the rest from disk when needed (slower)'
                      .format(len(self.pairs), self._budget / 2 ** 20, self.nbytes / 2 ** 20))

    def _check_patch(self, pair, shape):
        """DataError when the (rainy half of the) image is smaller than the patch."""
        height, width = shape[:2]
        if height < self.patch_size or width < self.patch_size:
            what = ('the {} half of {}'.format(pair.half, pair.rain_path) if pair.half
                    else pair.rain_path)
            raise DataError('{} is {}x{}, smaller than the training patch {}x{}; remove it from '
                            'the training set or use a smaller --patch_size'
                            .format(what, width, height, self.patch_size, self.patch_size))

    def _validate_headers(self):
        """Lazy mode: check sizes from file headers where the format allows it."""
        for pair in self.pairs:
            size = images.pair_size(pair)
            if size is not None:
                self._check_patch(pair, size)

    # -- worker ------------------------------------------------------------------------------

    def _make_batch(self, rng):
        indices = rng.integers(len(self.pairs), size=self.batch_size)
        draws = rng.random((self.batch_size, 3))
        if self.layers is not None:
            layer_indices, layer_draws = self.layers.draw(rng, self.batch_size)
        if self._entries is not None:
            entries = self._entries
        else:
            wanted = sorted(set(int(i) for i in indices))
            entries = dict(zip(wanted, self._pool.map(self._load_entry, wanted)))
        shape = (self.batch_size, self.patch_size, self.patch_size, 3)
        rain_batch = np.empty(shape, np.float32)
        clean_batch = np.empty(shape, np.float32)
        for i, index in enumerate(indices):
            rain, rain_scale, clean, clean_scale = entries[int(index)]
            rain, clean = crop_at(rain, clean, self.patch_size, draws[i], self.flip)
            images.to_float(clean, clean_scale, out=clean_batch[i])
            if self.layers is not None:
                rain_batch[i] = self.layers.rain_for(clean_batch[i], layer_indices[i],
                                                     layer_draws[i])
            else:
                images.to_float(rain, rain_scale, out=rain_batch[i])
        return rain_batch, clean_batch

    def _put(self, item):
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _generators(self):
        """The generator of each batch from ``start`` on: ``default_rng([seed, k])`` for batch
        k when seeded, else one unseeded generator for all."""
        if self.seed is None:
            rng = np.random.default_rng()
            while True:
                yield rng
        index = self.start
        while True:
            yield np.random.default_rng([int(self.seed), index])
            index += 1

    def _run(self):
        try:
            for rng in self._generators():  # owned by this thread only
                if self._stop.is_set():
                    break
                self._put(self._make_batch(rng))
        except BaseException as exc:  # handed to the consumer, re-raised in next_batch
            self._put(_Failure(exc))

    # -- consumer ----------------------------------------------------------------------------

    def next_batch(self):
        """The next batch.

        Returns:
          (rain, clean): float32 arrays [B, P, P, 3], BGR, values in [0, 1].

        Raises:
          The worker's exception (e.g. DataError for a corrupt file read lazily);
          RuntimeError after close().
        """
        if self._closed:
            raise RuntimeError('TrainBatcher is closed')
        if self._error is not None:
            raise self._error
        start = time.perf_counter()
        while True:
            try:
                item = self._queue.get(timeout=0.5)
                break
            except queue.Empty:
                if not self._thread.is_alive():
                    self._error = RuntimeError('the TrainBatcher worker thread stopped')
                    raise self._error
        self.wait_seconds += time.perf_counter() - start
        if isinstance(item, _Failure):
            self._error = item.exc
            raise item.exc
        self.batches_served += 1
        return item

    def close(self):
        """Stop the worker thread and the decode threads (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        self._thread.join(timeout=10)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    @property
    def alive(self):
        """Whether the worker thread is running."""
        return self._thread.is_alive()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False
