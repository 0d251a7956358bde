"""BFM_model_front.mat loading/validation and the synthetic model."""

import numpy as np
import pytest
import scipy.io

from deep3dface import bfm, constants, synthetic


def test_round_trip_preserves_every_array(synthetic_model, tmp_path):
  path = str(tmp_path / "model.mat")
  bfm.save_model(synthetic_model, path)
  loaded = bfm.load_model(path)
  for field in bfm.MorphableModel.__dataclass_fields__:
    np.testing.assert_array_equal(getattr(loaded, field), getattr(synthetic_model, field),
                                  err_msg=field)
  raw = scipy.io.loadmat(path)
  assert raw["tri"].min() == 1 and raw["exBase"].dtype == np.float64  # Deep3D's conventions
  assert raw["point_buf"].max() == synthetic_model.num_triangles + 1


def _write_broken(tmp_path, model, **changes):
  data = bfm.model_to_mat_dict(model)
  for key, value in changes.items():
    if value is None:
      del data[key]
    else:
      data[key] = value(data[key]) if callable(value) else value
  path = str(tmp_path / "broken.mat")
  scipy.io.savemat(path, data)
  return path


@pytest.mark.parametrize("changes, message", [
    (dict(idBase=None), r"missing key\(s\) idBase"),
    (dict(idBase=lambda a: a[:, :79]), r"key 'idBase' has shape \[\d+, 79\], expected \[3N, 80\]"),
    (dict(meanshape=lambda a: a[:, :-1]), r"key 'meanshape' has shape .* expected \[1, 3N\]"),
    (dict(tri=lambda a: a - 1), r"key 'tri' contains index 0: indices must be 1-based"),
    (dict(keypoints=lambda a: a + 1e6), r"key 'keypoints' contains index \d+, out of range"),
    (dict(point_buf=lambda a: a + 1), r"key 'point_buf' contains index \d+, out of range"),
    (dict(texBase=lambda a: np.where(np.arange(a.size).reshape(a.shape) == 7, np.nan, a)),
     r"key 'texBase' contains NaN"),
    (dict(tri=lambda a: a + 0.5), r"key 'tri' contains non-integer values"),
    (dict(skinmask=lambda a: a * 2), r"key 'skinmask' must contain only 0 and 1"),
    (dict(tri_mask2=lambda a: a.T), r"key 'tri_mask2' has shape"),
])
def test_bad_files_give_one_line_naming_file_and_key(synthetic_model, tmp_path, changes,
                                                     message):
  path = _write_broken(tmp_path, synthetic_model, **changes)
  with pytest.raises(bfm.ModelFormatError, match=message) as info:
    bfm.load_model(path)
  assert str(info.value).startswith(path) and "\n" not in str(info.value)


def test_unreadable_and_missing_files(tmp_path):
  junk = tmp_path / "junk.mat"
  junk.write_bytes(b"MATLAB 5.0 MAT-file" + b"\x00" * 50)
  with pytest.raises(bfm.ModelFormatError, match="junk.mat: not a readable MATLAB"):
    bfm.load_model(str(junk))
  with pytest.raises(bfm.ModelFormatError, match="no such file"):
    bfm.load_model(str(tmp_path / "absent.mat"))


def test_point_buffer_matches_deep3d_file_on_real_topology(bfm_topology_path):
  info = scipy.io.loadmat(bfm_topology_path)
  tri = (info["tri"] - 1).astype(np.int64)
  mine = bfm.point_buffer(tri, info["point_buf"].shape[0])
  real = (info["point_buf"] - 1).astype(np.int64)
  # Same incident triangles per vertex (Deep3D lists them in another order).
  np.testing.assert_array_equal(np.sort(mine, axis=1), np.sort(real, axis=1))


def test_synthetic_grid_model_is_face_like(synthetic_model):
  m = synthetic_model
  assert 2000 < m.num_vertices < 6000 and m.id_base.shape == (3 * m.num_vertices, 80)
  # Five alignment points of the keypoints sit near Deep3D's standard targets.
  kp = m.mean_shape[m.keypoints]  # model space, dm
  five = np.stack([kp[[36, 39]].mean(0), kp[[42, 45]].mean(0), kp[30], kp[48], kp[54]])
  standard = np.array(constants.STANDARD_FIVE_POINTS)
  np.testing.assert_allclose(five[:, :2], standard[:, :2], atol=0.03)
  np.testing.assert_allclose(five[:, 2], standard[:, 2], atol=0.12)
  # The nose is the front-most feature; the triangles face +z (CCW in x, y).
  assert m.mean_shape[m.keypoints[30], 2] > m.mean_shape[:, 2].max() - 0.02
  v = m.mean_shape.astype(np.float64)
  t = m.triangles
  normals_z = np.cross(v[t[:, 0]] - v[t[:, 1]], v[t[:, 1]] - v[t[:, 2]])[:, 2]
  assert (normals_z > 0).mean() > 0.97
  # Bases: decaying component scales; masks inside the mesh.
  rms = np.sqrt((m.id_base ** 2).mean(0))
  assert rms[0] > 3 * rms[-1] > 0
  assert 0 < m.skin_mask.sum() < len(m.front_mask_idx) < m.num_vertices
  assert m.tri_mask2.max() < len(m.front_mask_idx)
  assert np.all((m.mean_tex >= 0) & (m.mean_tex <= 255))


def test_synthetic_model_on_real_topology(bfm_topology_path, standard_landmarks_path):
  lm = scipy.io.loadmat(standard_landmarks_path)["lm"]
  m = synthetic.synthetic_model("bfm", bfm_topology_path, standard_landmarks=lm)
  assert (m.num_vertices, m.num_triangles) == (35709, 70789)
  info = scipy.io.loadmat(bfm_topology_path)
  np.testing.assert_array_equal(m.keypoints, info["keypoints"].ravel() - 1)
  np.testing.assert_allclose(m.mean_shape[m.keypoints, :2], lm[:, :2], atol=0.03)
  xy = m.mean_shape[:, :2].astype(np.float64)
  e1, e2 = xy[m.triangles[:, 1]] - xy[m.triangles[:, 0]], xy[m.triangles[:, 2]] - xy[m.triangles[:, 0]]
  assert ((e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]) < 0).sum() < 20  # almost no folds


def test_unknown_topology_is_rejected():
  with pytest.raises(ValueError, match="topology must be"):
    synthetic.synthetic_model("sphere")
  with pytest.raises(ValueError, match="needs facemodel_info"):
    synthetic.synthetic_model("bfm")


@pytest.fixture(scope="module")
def face_model_default():
  return synthetic.synthetic_model()  # the embedded default: the "face" topology


def test_default_topology_has_the_papers_size_and_is_a_manifold_disk(face_model_default):
  m = face_model_default
  assert m.num_vertices == constants.BFM_VERTICES == 35709
  t = m.triangles.astype(np.int64)
  assert np.array_equal(np.unique(t), np.arange(m.num_vertices))  # every vertex in a face
  edges = np.sort(np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]]), axis=1)
  unique, counts = np.unique(edges, axis=0, return_counts=True)
  assert counts.max() == 2  # manifold: no edge in three faces
  assert m.num_vertices - len(unique) + len(t) == 1  # Euler characteristic of a disk
  boundary = unique[counts == 1]
  # one boundary loop: every boundary vertex has exactly two boundary edges, and walking
  # them visits them all
  degree = np.bincount(boundary.ravel(), minlength=m.num_vertices)
  assert set(degree[degree > 0]) == {2}
  neighbours = {}
  for a, b in boundary:
    neighbours.setdefault(a, []).append(b)
    neighbours.setdefault(b, []).append(a)
  start = prev = boundary[0, 0]
  current, seen = neighbours[start][0], 1
  while current != start:
    prev, current = current, [n for n in neighbours[current] if n != prev][0]
    seen += 1
  assert seen == len(neighbours)
  v = m.mean_shape.astype(np.float64)
  normals_z = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])[:, 2]
  assert (normals_z > 0).mean() > 0.97
  # near-equilateral triangles in the plane: longest / shortest edge
  xy = v[:, :2]
  lengths = np.stack([np.linalg.norm(xy[t[:, i]] - xy[t[:, (i + 1) % 3]], axis=1)
                      for i in range(3)], 1)
  assert np.median(lengths.max(1) / lengths.min(1)) < 1.5


def test_default_topology_level_sizes(face_model_default):
  from gcn_face import mesh_sampling
  sampling = mesh_sampling.build(face_model_default.mean_shape, face_model_default.triangles)
  assert sampling.sizes == [35709, 8928, 2232, 558, 140]


def test_skin_tone_is_the_first_albedo_component(face_model_default):
  m = face_model_default
  tex = m.tex_base.reshape(m.num_vertices, 3, -1).astype(np.float64)
  skin = m.skin_mask
  mean = m.mean_tex.reshape(-1, 3)[skin].mean(0)
  # component 0 moves the whole face together (darker and redder-browner); the others barely
  # move the face's mean colour, and all are orthogonal (as a PCA's)
  tone = tex[skin, :, 0].mean(0)
  assert np.all(tone < -30) and tone[0] < tone[1] < tone[2]
  assert np.abs(tex[:, :, 1:].mean(0)).max() < 0.02 * np.abs(tone).max()
  gram = m.tex_base.astype(np.float64).T @ m.tex_base.astype(np.float64)
  off = gram - np.diag(np.diag(gram))
  assert np.abs(off).max() < 1e-4 * np.diag(gram).max()
  assert tex[skin, 0, 0].std() < 0.15 * abs(tone[0])  # nearly uniform
  light, dark = mean + (-1.5) * tone, mean + 2.5 * tone
  assert light.mean() > 200 and dark.max() < 130  # N(0, 1) spans light to dark skin
  # and the albedo bases are mirror-symmetric, as a face's
  from gcn_face import symmetry
  pairs = symmetry.mirror_pairs(m.mean_shape)
  assert len(pairs) > 0.45 * m.num_vertices
  np.testing.assert_allclose(tex[pairs[:, 0]], tex[pairs[:, 1]], atol=1e-3)
