"""The dataset audit's library: what a deraining data set holds, and what two sets share.

Modules: ``audit_pairs`` (the folder a dataset name stands for, the pairs the audit sees),
``audit_scan`` (reading a set once: sizes, rain level, pixel digests, backgrounds; the
findings within and between sets), ``backgrounds`` (clean backgrounds that show the same
scene, rain layers that correlate), ``audit_report`` (``audit.json``, ``audit.html``, the
thumbnail strips), ``warning`` (the shared-background check training runs at start). The
command line is the root's ``audit.py``. Asks ``loading`` for pairs and images, ``metrics`` for
the rain level and ``pictures`` for thumbnails; no TensorFlow.
"""
