"""Results are bit-identical for any intra-op thread count (separate processes): the
rasterizer, the face ops and the graph ops."""

import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def test_bit_identical_across_thread_counts(tmp_path):
  outputs = []
  for threads in (1, 2, 3):
    path = str(tmp_path / f"t{threads}.npz")
    subprocess.run([sys.executable, os.path.join(HERE, "thread_probe.py"), str(threads), path],
                   check=True, cwd=os.path.dirname(HERE),
                   env=dict(os.environ, PYTHONPATH=os.path.dirname(HERE)))
    outputs.append(np.load(path))
  assert (outputs[0]["ids"] >= 0).mean() > 0.3
  for other in outputs[1:]:
    for key in outputs[0].files:
      assert outputs[0][key].tobytes() == other[key].tobytes(), key
