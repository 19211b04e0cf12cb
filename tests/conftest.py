"""Shared test setup: project root on sys.path, quiet TensorFlow in TF1 graph mode."""
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), 'shared')
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
