#!/usr/bin/env bash
# Quick-start step 1: install everything into the current Python, build the
# rasterizer op, configure Bazel for this interpreter, and run the main job.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
"$PYTHON" -m pip install -q -r requirements.txt
"$PYTHON" -m pip install -q --no-build-isolation -e .
echo "build --repo_env=PYTHON_BIN_PATH=$("$PYTHON" -c 'import sys; print(sys.executable)')" > user.bazelrc
# Bazel tests run from the runfiles tree; point them at ../shared's real data.
if [ -d ../shared/data ]; then
  echo "test --test_env=GCN_FACE_SHARED=$(cd ../shared && pwd)" >> user.bazelrc
fi
# Main job (the embedded default): until the reconstruction pipeline lands,
# render a demo mesh through the differentiable renderer.
if [ -f ../shared/data/coma/template.obj ]; then
  "$PYTHON" -m scripts.render_mesh --mesh=../shared/data/coma/template.obj --angles=0,0.5,0 --camera_distance=2.6 \
    --output=out/render_mesh.png
else
  "$PYTHON" -m scripts.render_mesh --mesh=cube --output=out/render_mesh.png
fi
