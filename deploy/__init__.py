"""Taking a ReMAEN model out of this project: SavedModel, ONNX and LiteRT exports.

``export`` builds the export graph (the graph factory's inference graph with the options
every runtime computes alike: padded dilated convolutions, SE means as means of row means),
writes one format, checks it against the project's graph on real images and writes the model
card next to it (``python main.py --export FORMAT --export_dir DIR``). ``runtimes`` loads
and runs an exported model in its own runtime (the check, the tests, ``bench.py
--runtimes``). ``derain_onnx.py`` derains a photo with onnxruntime, numpy and OpenCV only,
without TensorFlow. Importing this package starts nothing; docs/deploy.md tells the rest.
"""
