"""Derain photos with an exported ReMAEN ONNX model: onnxruntime, numpy and OpenCV only.

    python main.py --export onnx --model light --export_dir exports/light_onnx   # once
    python deploy/derain_onnx.py exports/light_onnx/remaen.onnx photo.jpg derained.png

No TensorFlow and nothing else of this project: copy this file and the ``.onnx`` anywhere
``pip install onnxruntime numpy opencv-python-headless`` works. The model takes the whole
image at once (any size; memory grows with the pixels, docs/deploy.md). Its input
``rain_bgr`` is [1, H, W, 3] float32 BGR in [0, 1], OpenCV's channel order, its output
``derained_bgr`` the same, clipped to [0, 1]; the result is rounded to 8 bits as
``main.py --input`` rounds it.
"""
import argparse
import os
import sys
import time

import cv2
import numpy as np
import onnxruntime

INPUT_NAME = 'rain_bgr'
OUTPUT_NAME = 'derained_bgr'


def read_bgr(path):
    """An image file as [H, W, 3] float32 BGR in [0, 1] (EXIF orientation applied; gray and
    alpha converted, 16-bit scaled by 65535); ValueError when OpenCV cannot decode it."""
    image = cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if image is None:
        raise ValueError('%s is not an image OpenCV can read' % path)
    scale = 65535.0 if image.dtype == np.uint16 else 255.0
    return image.astype(np.float32) / scale


def to_uint8(image):
    """[H, W, 3] float in [0, 1] -> uint8, rounded to the nearest level."""
    return np.clip(np.rint(image.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def make_session(model_path, threads=0):
    """An onnxruntime CPU session of the model (``threads`` 0 = one per core)."""
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(model_path, options,
                                        providers=['CPUExecutionProvider'])


def derain(session, image):
    """Derain one [H, W, 3] float32 BGR image in [0, 1]; returns the same shape, in [0, 1]."""
    output, = session.run([OUTPUT_NAME], {INPUT_NAME: image[np.newaxis]})
    return output[0]


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='derain_onnx.py', description='Derain a photo with an exported ReMAEN ONNX model '
        '(onnxruntime, numpy and OpenCV; no TensorFlow).')
    parser.add_argument('model', help='the .onnx file (main.py --export onnx)')
    parser.add_argument('photo', help='the rainy photo (any format OpenCV reads)')
    parser.add_argument('output', help='where to write the derained image (.png, .jpg ...)')
    parser.add_argument('--threads', type=int, default=0,
                        help='onnxruntime intra-op threads (default 0: one per core)')
    args = parser.parse_args(argv)
    for path in (args.model, args.photo):
        if not os.path.isfile(path):
            print('error: %s is not a file' % path, file=sys.stderr)
            return 2
    try:
        image = read_bgr(args.photo)
    except ValueError as exc:
        print('error: %s' % exc, file=sys.stderr)
        return 2
    session = make_session(args.model, args.threads)
    start = time.perf_counter()
    derained = derain(session, image)
    seconds = time.perf_counter() - start
    if not cv2.imwrite(args.output, to_uint8(derained)):
        print('error: cannot write %s (unknown extension or folder)' % args.output,
              file=sys.stderr)
        return 2
    print('%s: %dx%d derained in %.1f s -> %s' % (args.photo, image.shape[1], image.shape[0],
                                                  seconds, args.output))
    return 0


if __name__ == '__main__':
    sys.exit(main())
