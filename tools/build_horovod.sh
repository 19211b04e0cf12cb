#!/usr/bin/env bash
# Build and install Horovod 0.28.1 (TensorFlow + Gloo) against the installed TensorFlow.
#
#     bash tools/build_horovod.sh            # CPU/Gloo build (what our tests use)
#     HOROVOD_GPU_OPERATIONS=NCCL bash tools/build_horovod.sh   # GPU build (untested here)
#
# Horovod 0.28.1 does not build against recent TensorFlow (2.21, ours) as released: its
# horovod/tensorflow/xla_mpi_ops.cc (the XLA custom-call ops, a GPU-only feature) includes
# XLA headers that moved. The script downloads the sdist and patches line 23 of that file:
#   CPU build: '#if TENSORFLOW_VERSION >= 2006000000 && HAVE_GPU' (the block drops out);
#   GPU build: '#if 0' (the XLA ops are disabled entirely; Horovod's normal ops remain).
# Against tensorflow==2.13.* the sdist builds unpatched; the patch changes nothing there
# for a CPU build. Needs cmake and g++; takes ~4 minutes on 2 free cores. See
# docs/multi-machine.md.
set -euo pipefail

VERSION=0.28.1
PYTHON=${PYTHON:-python}

for tool in cmake g++; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "error: $tool is needed to build Horovod (e.g. apt-get install cmake g++)" >&2
        exit 2
    fi
done
if ! TF_VERSION=$("$PYTHON" -c 'import tensorflow as tf; print(tf.__version__)' 2>/dev/null)
then
    echo "error: TensorFlow must be installed first (pip install -r requirements.txt)" >&2
    exit 2
fi
echo "Building Horovod $VERSION for TensorFlow $TF_VERSION ($("$PYTHON" --version))"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$PYTHON" -m pip download --no-deps --no-binary :all: -d "$WORK" "horovod==$VERSION"
tar -xzf "$WORK/horovod-$VERSION.tar.gz" -C "$WORK"
SOURCE="$WORK/horovod-$VERSION"

XLA_OPS="$SOURCE/horovod/tensorflow/xla_mpi_ops.cc"
LINE=$(sed -n 23p "$XLA_OPS")
if [ "$LINE" != '#if TENSORFLOW_VERSION >= 2006000000' ]; then
    echo "error: unexpected line 23 of xla_mpi_ops.cc: '$LINE' (not Horovod $VERSION?)" >&2
    exit 1
fi
if [ -n "${HOROVOD_GPU_OPERATIONS:-}${HOROVOD_GPU:-}" ]; then
    sed -i '23s/.*/#if 0  \/\/ XLA ops disabled: their headers moved in TensorFlow 2.14+/' \
        "$XLA_OPS"
else
    sed -i '23s/.*/#if TENSORFLOW_VERSION >= 2006000000 \&\& HAVE_GPU/' "$XLA_OPS"
fi
echo "patched line 23 of horovod/tensorflow/xla_mpi_ops.cc: $(sed -n 23p "$XLA_OPS")"

HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
    HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 \
    "$PYTHON" -m pip install --no-cache-dir --no-build-isolation "$SOURCE"

# Run from elsewhere: the source tree must not shadow the installed package.
(cd / && TF_CPP_MIN_LOG_LEVEL=3 "$PYTHON" -c 'import horovod, horovod.tensorflow as hvd
print("Horovod %s with TensorFlow ops, Gloo built: %s" % (horovod.__version__, hvd.gloo_built()))')
