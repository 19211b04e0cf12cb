"""An exported ReMAEN model in its own runtime: TensorFlow (SavedModel), ONNX Runtime, LiteRT.

    runtime = runtimes.load('onnx', 'exports/light')      # the folder --export_dir wrote
    outputs = runtime(image)      # {'stage1_bgr': ..., 'derained_bgr': ...}, each [H, W, 3]

Every runtime takes one [H, W, 3] float32 BGR image in [0, 1] of any size and returns the
export's outputs by name. The export check, the tests and ``bench.py --runtimes`` use them.
onnxruntime and LiteRT (``ai_edge_litert``) are imported at load time, TensorFlow (for the
SavedModel) through ``quiet.import_tf``, so that importing this module starts none of them.
"""
import os
import statistics
import time

import numpy as np

from console import quiet
import utils

FORMATS = ('savedmodel', 'onnx', 'litert')
INPUT_NAME = 'rain_bgr'
OUTPUT_NAME = 'derained_bgr'
# The model file of each format inside the export folder (a SavedModel is the folder itself).
MODEL_FILES = {'savedmodel': 'saved_model.pb', 'onnx': 'remaen.onnx', 'litert': 'remaen.tflite'}
SIGNATURE = 'serving_default'


def output_names(stages):
    """The export's output names: ``stage<s>_bgr`` for s < stages, then ``derained_bgr``."""
    return ['stage%d_bgr' % s for s in range(1, stages)] + [OUTPUT_NAME]


def model_path(fmt, folder):
    """What a runtime loads: the SavedModel folder, or the ``.onnx``/``.tflite`` file in it."""
    return folder if fmt == 'savedmodel' else os.path.join(folder, MODEL_FILES[fmt])


class SavedModelRuntime(object):
    """The SavedModel's ``serving_default`` signature in a TensorFlow session of its own.

    Args:
      folder: the SavedModel folder.
      threads: intra-op threads (0 = one per core).
    """

    def __init__(self, folder, threads=0):
        tf = quiet.import_tf()
        self.graph = tf.Graph()
        self.session = tf.Session(graph=self.graph,
                                  config=utils.session_config(intra_op_threads=threads))
        with self.graph.as_default():
            meta = tf.saved_model.loader.load(self.session,
                                              [tf.saved_model.tag_constants.SERVING], folder)
        signature = meta.signature_def[SIGNATURE]
        self.input = signature.inputs[INPUT_NAME].name
        self.outputs = {name: info.name for name, info in signature.outputs.items()}

    def __call__(self, image):
        values = self.session.run(self.outputs, {self.input: image[np.newaxis]})
        return {name: value[0] for name, value in values.items()}

    def close(self):
        self.session.close()


class OnnxRuntime(object):
    """An ``.onnx`` export in an onnxruntime CPU session (its default options).

    Args:
      path: the ``.onnx`` file.
      threads: intra-op threads (0 = onnxruntime's default, one per core).
    """

    def __init__(self, path, threads=0):
        import onnxruntime
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(path, options,
                                                    providers=['CPUExecutionProvider'])
        self.names = [output.name for output in self.session.get_outputs()]

    def __call__(self, image):
        values = self.session.run(self.names, {INPUT_NAME: image[np.newaxis]})
        return {name: value[0] for name, value in zip(self.names, values)}

    def close(self):
        self.session = None


class LiteRTRuntime(object):
    """A ``.tflite`` export in LiteRT's interpreter, its input resized to each image.

    Args:
      path: the ``.tflite`` file.
      threads: interpreter threads (0 = one per core).
    """

    def __init__(self, path, threads=0):
        from ai_edge_litert.interpreter import Interpreter
        self.interpreter = Interpreter(model_path=path,
                                       num_threads=threads or os.cpu_count() or 1)
        self.input = self.interpreter.get_input_details()[0]['index']
        self.outputs = {d['name']: d['index'] for d in self.interpreter.get_output_details()}
        self.shape = None

    def __call__(self, image):
        batch = np.ascontiguousarray(image[np.newaxis], np.float32)
        if batch.shape != self.shape:
            # The first allocation logs "INFO: Created TensorFlow Lite XNNPACK delegate".
            with quiet.stderr_silenced(not quiet.is_verbose()):
                self.interpreter.resize_tensor_input(self.input, batch.shape)
                self.interpreter.allocate_tensors()
            self.shape = batch.shape
        self.interpreter.set_tensor(self.input, batch)
        self.interpreter.invoke()
        return {name: self.interpreter.get_tensor(index)[0]
                for name, index in self.outputs.items()}

    def close(self):
        self.interpreter = None


RUNTIMES = {'savedmodel': SavedModelRuntime, 'onnx': OnnxRuntime, 'litert': LiteRTRuntime}


def load(fmt, folder, threads=0):
    """The runtime of format ``fmt`` on the export in ``folder`` (see the classes)."""
    return RUNTIMES[fmt](model_path(fmt, folder), threads)


def time_runs(runners, image, repeats):
    """Time callables on one image, interleaved (each round runs every one once).

    The first call of each is a warm-up (session start-up, memory planning) and not timed.

    Args:
      runners: {label: callable(image)}.
      image: [H, W, 3] float32.
      repeats: timed rounds.

    Returns:
      {label: median seconds of its timed runs}.
    """
    for run in runners.values():
        run(image)
    seconds = {label: [] for label in runners}
    for _ in range(repeats):
        for label, run in runners.items():
            start = time.perf_counter()
            run(image)
            seconds[label].append(time.perf_counter() - start)
    return {label: statistics.median(values) for label, values in seconds.items()}
