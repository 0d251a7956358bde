"""scripts/build_sampling.py end to end: builds, reuses, refuses bad templates in one line."""

import os
import subprocess
import sys

import numpy as np

from gcn_face import mesh_io, mesh_sampling
from tests.meshes import wavy_grid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args):
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  return subprocess.run([sys.executable, "-m", "scripts.build_sampling", *args], cwd=ROOT,
                        capture_output=True, text=True, env=env, timeout=300)


def test_builds_and_reuses_cache(tmp_path):
  v, f = wavy_grid(20)
  obj = str(tmp_path / "t.obj")
  mesh_io.write_obj(obj, v, f)
  out = str(tmp_path / "cache")
  first = run(f"--template={obj}", f"--output_dir={out}", "--factors=4,4")
  assert first.returncode == 0, first.stderr
  assert "level sizes [400, 100, 25]" in first.stdout
  second = run(f"--template={obj}", f"--output_dir={out}", "--factors=4,4")
  assert second.returncode == 0 and "loaded" in second.stderr
  s = mesh_sampling.load(out)
  assert s.sizes == [400, 100, 25]
  np.testing.assert_allclose(s.vertices[0], np.asarray(mesh_io.read_obj(obj)[0]), atol=1e-6)


def test_bad_template_is_one_line(tmp_path):
  obj = tmp_path / "bad.obj"
  obj.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n")
  result = run(f"--template={obj}", f"--output_dir={tmp_path / 'c'}")
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1].startswith("error: ")
  assert "out of range" in result.stderr and "Traceback" not in result.stderr
  missing = run("--template=nowhere/BFM_model_front.mat", f"--output_dir={tmp_path / 'c'}")
  assert missing.returncode == 1 and "no such file" in missing.stderr
