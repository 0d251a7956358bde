#!/usr/bin/env bash
# Quick-start step 1: install everything into the current Python, build the
# rasterizer op, configure Bazel for this interpreter, and run the main job.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
"$PYTHON" -m pip install -q -r requirements.txt
"$PYTHON" -m pip install -q --no-build-isolation -e .
# three.js for viewer.html and the glTF validator of the tests (package-lock.json pins them).
if command -v npm >/dev/null; then
  npm ci --no-audit --no-fund --loglevel=error
else
  echo "setup.sh: npm not found: no viewer.html (apt-get install nodejs npm)" >&2
fi
echo "build --repo_env=PYTHON_BIN_PATH=$("$PYTHON" -c 'import sys; print(sys.executable)')" > user.bazelrc
# Bazel tests run from the runfiles tree; point them at ../shared's real data.
if [ -d ../shared/data ]; then
  echo "test --test_env=GCN_FACE_SHARED=$(cd ../shared && pwd)" >> user.bazelrc
fi
# Main job (the embedded default, no licensed assets): the whole loop on the synthetic
# 35,709-vertex morphable model - dataset (plus a test split of another seed), a short
# training of the start-from-coarse GCN (docs/training.md), the coarse-vs-GCN tables on
# both test splits, and a reconstruction of a public-domain photo that ships with
# scikit-image (fit mode). Each step resumes or skips work already done when setup.sh runs
# again. About 5.5 minutes on 2 cores.
"$PYTHON" -m scripts.make_synthetic --output_dir=data/synthetic --num_train=128 --num_val=8 --num_test=16
"$PYTHON" -m scripts.make_synthetic --output_dir=data/synthetic_seed1 --seed=1 --num_train=0 \
  --num_val=0 --num_test=16
"$PYTHON" -m scripts.train --data_dir=data/synthetic --checkpoint_dir=checkpoints/bfm09_face_normal \
  --restore --flagfile=recipes/quick_start.flags
for split in synthetic synthetic_seed1; do
  "$PYTHON" -m scripts.evaluate --data_dir=data/$split --checkpoints=checkpoints/bfm09_face_normal \
    --labels=quick --output_dir=out/evaluate/$split
done
mkdir -p out
"$PYTHON" -c "import PIL.Image, skimage.data; PIL.Image.fromarray(skimage.data.astronaut()).save('out/astronaut.png')"
"$PYTHON" -m scripts.reconstruct --input=out/astronaut.png --output_dir=out/reconstruct
echo "Results: out/evaluate/synthetic/results.md and out/evaluate/synthetic_seed1/results.md"
echo "         (coarse vs GCN, examples.png), out/reconstruct/astronaut/ (OBJ, PLY, mesh.glb,"
echo "         viewer.html, turntable.gif, strip, overlay)."
