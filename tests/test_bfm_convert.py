"""BFM09 -> BFM_model_front.mat conversion on raw files the tests write in the original formats.

The reference below walks the index chain one vertex and one component at a time
from the bytes written to disk, independently of the vectorised converter.
"""

import array
import os
import sys

import numpy as np
import pytest
import scipy.io

from deep3dface import bfm, bfm_convert
from tests.scripts_run import assert_one_line_error, run_script


def _grid_topology(rows, cols):
  """facemodel_info.mat arrays (1-based) for a rows x cols vertex grid."""
  tri = []
  for r in range(rows - 1):
    for c in range(cols - 1):
      v = r * cols + c
      tri += [[v, v + 1, v + cols], [v + 1, v + cols + 1, v + cols]]
  tri = np.array(tri)
  n = rows * cols
  return {
      "tri": (tri + 1).astype(np.float64),
      "point_buf": (bfm.point_buffer(tri, n) + 1).astype(np.float64),
      "tri_mask2": (tri[:4] + 1).astype(np.float64),
      "keypoints": (np.arange(68) % n + 1).reshape(1, -1).astype(np.float64),
      "frontmask2_idx": np.arange(1, n + 1, dtype=np.float64).reshape(-1, 1),
      "skinmask": (np.arange(n) % 2).reshape(1, -1).astype(np.float64),
  }


def _write_exp_pca(path, mean, basis_component_major):
  """Guo et al.'s layout, written with the `array` module as Deep3D reads it (native = little)."""
  assert sys.byteorder == "little"
  with open(path, "wb") as f:
    array.array("i", [basis_component_major.shape[0]]).tofile(f)
    array.array("f", mean.tobytes()).tofile(f)
    array.array("f", basis_component_major.tobytes()).tofile(f)


def write_raw_inputs(folder, raw_vertices, exp_to_raw, front_to_exp, info, components=199,
                     exp_components=79, seed=0):
  """Writes the six inputs of Deep3D's conversion (1-based index files) and returns them."""
  rng = np.random.default_rng(seed)
  e = len(exp_to_raw)
  raw = {
      "shapeMU": (rng.standard_normal((3 * raw_vertices, 1)) * 5e4).astype(np.float32),
      "shapePC": rng.standard_normal((3 * raw_vertices, components), np.float32),
      "shapeEV": np.linspace(8e3, 1e2, components).reshape(-1, 1).astype(np.float32),
      "texMU": rng.uniform(60, 200, (3 * raw_vertices, 1)).astype(np.float32),
      "texPC": rng.standard_normal((3 * raw_vertices, components), np.float32),
      "texEV": np.linspace(40, 1, components).reshape(-1, 1).astype(np.float32),
  }
  scipy.io.savemat(os.path.join(folder, "01_MorphableModel.mat"), raw)
  exp_basis = rng.standard_normal((exp_components, 3 * e), np.float32)
  _write_exp_pca(os.path.join(folder, "Exp_Pca.bin"),
                 rng.standard_normal(3 * e).astype(np.float32), exp_basis)
  std_exp = np.linspace(2e4, 1e3, exp_components)
  np.savetxt(os.path.join(folder, "std_exp.txt"), std_exp)
  scipy.io.savemat(os.path.join(folder, "BFM_exp_idx.mat"),
                   {"trimIndex": (np.asarray(exp_to_raw) + 1).astype(np.uint16).reshape(-1, 1)})
  scipy.io.savemat(os.path.join(folder, "BFM_front_idx.mat"),
                   {"idx": (np.asarray(front_to_exp) + 1).astype(np.float64).reshape(-1, 1)})
  scipy.io.savemat(os.path.join(folder, "facemodel_info.mat"), info)
  return raw, exp_basis, std_exp


def _paths(folder):
  return [os.path.join(folder, name) for name in (
      "01_MorphableModel.mat", "Exp_Pca.bin", "std_exp.txt", "BFM_exp_idx.mat",
      "BFM_front_idx.mat", "facemodel_info.mat")]


def _check_vertices(arrays, raw, exp_basis, std_exp, exp_to_raw, front_to_exp, vertices):
  """Per-vertex, per-component reference of SPEC 2.4 (float64)."""
  for v in vertices:
    e = front_to_exp[v]
    r = exp_to_raw[e]
    for c in range(3):
      row, raw_row = 3 * v + c, 3 * r + c
      assert arrays["meanshape"][0, row] == pytest.approx(raw["shapeMU"][raw_row, 0] / 1e5,
                                                          rel=1e-6)
      assert arrays["meantex"][0, row] == pytest.approx(raw["texMU"][raw_row, 0], rel=1e-6)
      for j in (0, 1, 40, 79):
        assert arrays["idBase"][row, j] == pytest.approx(
            float(raw["shapePC"][raw_row, j]) * float(raw["shapeEV"][j, 0]) / 1e5, rel=1e-5)
        assert arrays["texBase"][row, j] == pytest.approx(
            float(raw["texPC"][raw_row, j]) * float(raw["texEV"][j, 0]), rel=1e-5)
      for j in (0, 1, 63):
        assert arrays["exBase"][row, j] == pytest.approx(
            float(exp_basis[j, 3 * e + c]) * std_exp[j] / 1e5, rel=1e-6)


@pytest.fixture()
def small_inputs(tmp_path):
  rng = np.random.default_rng(1)
  exp_to_raw = rng.permutation(40)[:30]      # 30 expression vertices of a 40-vertex "BFM"
  front_to_exp = rng.permutation(30)[:20]    # 20 front vertices
  data = write_raw_inputs(str(tmp_path), 40, exp_to_raw, front_to_exp, _grid_topology(4, 5))
  return str(tmp_path), data, exp_to_raw, front_to_exp


def test_convert_matches_per_vertex_reference(small_inputs):
  folder, (raw, exp_basis, std_exp), exp_to_raw, front_to_exp = small_inputs
  arrays = bfm_convert.convert(*_paths(folder))
  assert arrays["idBase"].shape == (60, 80) and arrays["exBase"].shape == (60, 64)
  assert arrays["texBase"].shape == (60, 80) and arrays["meanshape"].shape == (1, 60)
  # Deep3D's dtypes: float32 from the float32 BFM, float64 expression basis (std_exp.txt).
  assert arrays["idBase"].dtype == np.float32 and arrays["exBase"].dtype == np.float64
  _check_vertices(arrays, raw, exp_basis, std_exp, exp_to_raw, front_to_exp, range(20))
  info = scipy.io.loadmat(os.path.join(folder, "facemodel_info.mat"))
  for key in bfm_convert.INFO_KEYS:
    np.testing.assert_array_equal(arrays[key], info[key])


def test_script_writes_a_loadable_model(small_inputs, tmp_path):
  folder = small_inputs[0]
  output = tmp_path / "out" / "BFM_model_front.mat"
  result = run_script("convert_bfm", f"--bfm_dir={folder}", f"--output={output}")
  assert result.returncode == 0, result.stderr
  assert "20 vertices" in result.stdout
  model = bfm.load_model(str(output))
  assert model.num_vertices == 20 and model.num_triangles == 24
  assert not [p for p in os.listdir(output.parent) if "tmp" in p]


def test_script_error_is_one_line(tmp_path):
  result = run_script("convert_bfm", f"--bfm_dir={tmp_path}")
  assert_one_line_error(result, "01_MorphableModel.mat: no such file")


def _rewrite_mat(path, **changes):
  data = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
  for key, value in changes.items():
    if value is None:
      del data[key]
    else:
      data[key] = value
  scipy.io.savemat(path, data)


@pytest.mark.parametrize("name,edit,message", [
    ("Exp_Pca.bin", "truncate", r"Exp_Pca.bin: size \d+ bytes does not match 79 components"),
    ("01_MorphableModel.mat", {"shapeEV": None}, r"missing key\(s\) shapeEV"),
    ("01_MorphableModel.mat", {"texPC": np.zeros((120, 50), np.float32)},
     r"'texPC' has shape \[120, 50\], expected \[120, K\] with K >= 80"),
    ("01_MorphableModel.mat", {"shapeMU": np.full((120, 1), np.nan, np.float32)},
     "'shapeMU' must be a finite numeric array"),
    ("BFM_exp_idx.mat", {"trimIndex": np.arange(30).reshape(-1, 1)},
     r"'trimIndex' has indices in \[0, 29\], expected 1-based in \[1, 40\]"),
    ("BFM_front_idx.mat", {"idx": np.arange(2, 22).reshape(-1, 1) * 2.0},
     r"'idx' has indices in \[4, 42\], expected 1-based in \[1, 30\]"),
    ("std_exp.txt", "short", "expected 79 finite values"),
    ("facemodel_info.mat", {"point_buf": np.ones((21, 8))},
     "point_buf has 21 rows but the index files select 20 front vertices"),
    ("facemodel_info.mat", {"tri": np.full((24, 3), 21.0)}, "key 'tri' contains index 21"),
    ("facemodel_info.mat", "garbage", "not a readable MATLAB .mat file"),
])
def test_bad_inputs_name_file_and_problem(small_inputs, name, edit, message):
  folder = small_inputs[0]
  path = os.path.join(folder, name)
  if edit == "truncate":
    with open(path, "r+b") as f:
      f.truncate(os.path.getsize(path) - 4)
  elif edit == "short":
    np.savetxt(path, np.ones(78))
  elif edit == "garbage":
    with open(path, "wb") as f:
      f.write(b"MATLAB 5.0 MAT-file" + b"\x00" * 50)
  else:
    _rewrite_mat(path, **edit)
  with pytest.raises((bfm_convert.ConversionError, bfm.ModelFormatError)) as info:
    bfm_convert.convert(*_paths(folder))
  assert str(info.value).startswith(path) or name == "facemodel_info.mat"
  assert name in str(info.value)
  assert info.match(message)


def test_select_id_cross_check(small_inputs, tmp_path):
  folder, _, exp_to_raw, front_to_exp = small_inputs
  select = tmp_path / "select_vertex_id.mat"
  scipy.io.savemat(select, {"select_id": (exp_to_raw[front_to_exp] + 1).reshape(-1, 1)})
  bfm_convert.convert(*_paths(folder), select_id_path=str(select))
  wrong = exp_to_raw[front_to_exp] + 1
  wrong[[0, 1]] = wrong[[1, 0]]
  scipy.io.savemat(select, {"select_id": wrong.reshape(-1, 1)})
  with pytest.raises(bfm_convert.ConversionError, match="select_id disagrees"):
    bfm_convert.convert(*_paths(folder), select_id_path=str(select))


def test_real_index_files(tmp_path, bfm_topology_path):
  """Deep3D's real index files and topology, with random raw bases of the real sizes."""
  shared_bfm = os.path.dirname(bfm_topology_path)
  exp_to_raw = scipy.io.loadmat(os.path.join(shared_bfm, "BFM_exp_idx.mat"))["trimIndex"]
  front_to_exp = scipy.io.loadmat(os.path.join(shared_bfm, "BFM_front_idx.mat"))["idx"]
  exp_to_raw = exp_to_raw.reshape(-1).astype(np.int64) - 1
  front_to_exp = front_to_exp.reshape(-1).astype(np.int64) - 1
  std_exp = np.loadtxt(os.path.join(shared_bfm, "std_exp.txt"))
  info = scipy.io.loadmat(bfm_topology_path)
  raw, exp_basis, _ = write_raw_inputs(
      str(tmp_path), 53490, exp_to_raw, front_to_exp,
      {k: info[k] for k in bfm_convert.INFO_KEYS}, components=80, exp_components=len(std_exp))
  np.savetxt(os.path.join(tmp_path, "std_exp.txt"), std_exp)
  arrays = bfm_convert.convert(*_paths(str(tmp_path)),
                               select_id_path=os.path.join(shared_bfm, "select_vertex_id.mat"))
  model = bfm.model_from_mat_dict(arrays, "converted")
  assert model.num_vertices == 35709 and model.num_triangles == 70789
  sample = np.random.default_rng(2).choice(35709, 25, replace=False)
  _check_vertices(arrays, raw, exp_basis, std_exp, exp_to_raw, front_to_exp, sample)
