"""scripts/build_sampling.py end to end: builds, reuses, refuses bad templates in one line."""

import numpy as np

from gcn_face import mesh_io, mesh_sampling
from tests.meshes import wavy_grid
from tests.scripts_run import assert_one_line_error, run_script


def run(*args):
  return run_script("build_sampling", *args)


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
  assert_one_line_error(result, "out of range")
  missing = run("--template=nowhere/BFM_model_front.mat", f"--output_dir={tmp_path / 'c'}")
  assert_one_line_error(missing, "no such file")


def test_never_deletes_the_output_folder_it_did_not_write(tmp_path):
  keep = tmp_path / "project"
  keep.mkdir()
  (keep / "thesis.tex").write_text("years of work")
  for extra in ([], ["--force"]):
    result = run("--template=synthetic", f"--output_dir={keep}", *extra)
    assert_one_line_error(result, "not a mesh-sampling cache")
    assert (keep / "thesis.tex").read_text() == "years of work"
