#!/bin/sh
# The PyTriton server's own environment for tests/runtime/test_triton.py and export/triton_local.py:
# PyTriton 0.7 (a real tritonserver 2.x with its Python backend) needs numpy < 2 and a Python whose shared
# library is the system's (Debian's python3; a pyenv-built one fails), so it cannot share olvf's venv.
# About 450 MB, a minute or two from PyPI. Usage: tests/triton/make_env.sh [DEST]
# (default ~/.cache/olvf/pytriton-0.7.0; the tests find DEST/bin/python, or set OLVF_PYTRITON_PYTHON).
set -eu
DEST=${1:-"$HOME/.cache/olvf/pytriton-0.7.0"}
PYTHON=${OLVF_SYSTEM_PYTHON:-/usr/bin/python3}
if [ -x "$DEST/bin/python" ] && "$DEST/bin/python" -c "import pytriton, onnxruntime, tritonclient.grpc" 2>/dev/null; then
  echo "$DEST/bin/python"; exit 0
fi
"$PYTHON" -m venv "$DEST"
"$DEST/bin/pip" install -q "nvidia-pytriton==0.7.0" "numpy<2" "onnxruntime>=1.20"
echo "$DEST/bin/python"
