"""Mesh sampling (gcn_face.mesh_sampling): CoMA decimation, D/U matrices, Laplacians, cache."""

import logging
import os

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg

from gcn_face import mesh_io, mesh_sampling as ms
from tests import reference_sampling
from tests.meshes import wavy_grid


@pytest.fixture(scope="module")
def coma_template(coma_template_path):
  return mesh_io.read_obj(coma_template_path)


@pytest.fixture(scope="module")
def coma_sampling(coma_template):
  return ms.build(*coma_template)


@pytest.mark.parametrize("n,factor,seed", [(12, 4, 0), (15, 4, 1), (14, 2.5, 2), (20, 4, 3)])
def test_decimate_equals_literal_coma(n, factor, seed):
  v, f = wavy_grid(n, seed)
  kept, faces = ms.decimate(v, f, ms.level_sizes(len(v), [factor])[1], link_condition=False)
  ref_kept, ref_faces = reference_sampling.decimate(v, f, factor)
  np.testing.assert_array_equal(kept, ref_kept)
  np.testing.assert_array_equal(faces, ref_faces)


def test_decimate_two_levels_equal_reference():
  v, f = wavy_grid(18, 5)
  s = ms.build(v, f, factors=(4, 4), link_condition=False)
  ref_v, ref_f = v, f
  for level in range(2):
    kept, ref_f = reference_sampling.decimate(ref_v, ref_f, 4)
    ref_v = ref_v[kept]
    np.testing.assert_array_equal(s.faces[level + 1], ref_f)
    np.testing.assert_array_equal(s.vertices[level + 1], ref_v)


def test_quadrics_match_reference():
  v, f = wavy_grid(8)
  np.testing.assert_allclose(ms.vertex_quadrics(v, f), reference_sampling.quadrics(v, f),
                             rtol=1e-10, atol=1e-12)


def _check_level_properties(s):
  for level, (v, f) in enumerate(zip(s.vertices, s.faces)):
    ms.check_mesh(v, f, f"level {level}")  # manifold, no repeated / unused vertices
    area = np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
    assert area.min() > 0, f"level {level} has a zero-area face"
  for level, (d, u) in enumerate(zip(s.down, s.up)):
    fine, coarse = s.vertices[level], s.vertices[level + 1]
    d = d.tocsr()
    assert d.shape == (len(coarse), len(fine)) and u.shape == (len(fine), len(coarse))
    assert np.all(np.diff(d.indptr) == 1) and np.all(d.data == 1)  # one-hot rows
    assert np.all(np.diff(d.indices) > 0)  # survivors in ascending order
    np.testing.assert_array_equal(d @ fine, coarse)
    assert u.data.min() >= 0.0
    np.testing.assert_allclose(np.asarray(u.sum(1)).ravel(), 1.0, atol=1e-5)
    kept = d.indices
    up_coarse = u @ coarse
    np.testing.assert_allclose(up_coarse[kept], fine[kept], atol=1e-6)  # kept vertices reproduce
    # a smooth field (the positions themselves) survives down- and upsampling
    err = np.linalg.norm(u @ (d @ fine) - fine, axis=1) / np.linalg.norm(np.ptp(fine, axis=0))
    assert err.mean() < 0.03 and err.max() < 0.3, (level, err.mean(), err.max())
  for level, (a, lap) in enumerate(zip(s.adjacency, s.laplacians)):
    assert lap.dtype == np.float32 and a.dtype == np.float32
    assert abs(lap - lap.T).max() < 1e-6
    assert set(np.unique(a.data)) <= {1.0, 2.0}
    m = lap.shape[0]
    if m <= 2500:
      eig = scipy.linalg.eigvalsh(lap.toarray().astype(np.float64))
      lo, hi = eig[0], eig[-1]
    else:  # |eig(L - I)| <= 1  <=>  eig(L) in [0, 2]
      shifted = lap.astype(np.float64) - scipy.sparse.identity(m)
      radius = abs(scipy.sparse.linalg.eigsh(shifted, k=1, which="LM", tol=1e-8)[0][0])
      lo, hi = 1 - radius, 1 + radius
    assert -1e-5 <= lo and hi <= 2 + 1e-5, (level, lo, hi)


def test_coma_template_levels(coma_sampling):
  assert coma_sampling.sizes == [5023, 1256, 314, 79, 20]
  _check_level_properties(coma_sampling)


def test_link_condition_is_what_keeps_levels_manifold(coma_template):
  coma = ms.build(*coma_template, link_condition=False)  # the original's exact algorithm
  assert coma.sizes == [5023, 1256, 314, 79, 20]
  with pytest.raises(ms.MeshError, match="non-manifold edge"):
    for level, (v, f) in enumerate(zip(coma.vertices, coma.faces)):
      ms.check_mesh(v, f, f"level {level}")


def test_bfm_topology_levels(bfm_sampling):
  assert bfm_sampling.sizes == [35709, 8928, 2232, 558, 140]
  assert len(bfm_sampling.faces[0]) == 70789
  _check_level_properties(bfm_sampling)


def test_coma_edge_weights_flag(coma_template):
  v, f = coma_template
  s = ms.build(v, f, factors=(4,))
  coma = ms.upsampling_matrix(s.vertices[0], s.vertices[1], s.faces[1], coma_edge_weights=True)
  diff = abs(coma - s.up[0])
  assert diff.max() > 0  # the original's edge fit differs somewhere ...
  assert np.count_nonzero(np.asarray(diff.sum(1)).ravel() > 1e-9) < 0.2 * len(v)  # ... only on edges


def test_closest_points_equal_brute_force(coma_sampling):
  v, f = coma_sampling.vertices[2], coma_sampling.faces[2]
  rng = np.random.default_rng(0)
  points = rng.uniform(v.min(0) - 0.01, v.max(0) + 0.01, (300, 3))
  face, part, closest = ms.closest_points(points, v, f)
  a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
  for i, p in enumerate(points):
    # brute force: densely sampled barycentric points of every triangle bound the true distance
    w = np.stack(np.meshgrid(np.linspace(0, 1, 21), np.linspace(0, 1, 21)), -1).reshape(-1, 2)
    w = w[w.sum(1) <= 1]
    samples = a[:, None] + w[None, :, :1] * (b - a)[:, None] + w[None, :, 1:] * (c - a)[:, None]
    best = np.sqrt(((samples - p) ** 2).sum(-1).min())
    got = np.linalg.norm(closest[i] - p)
    assert got <= best + 1e-12
    assert best - got < 0.05 * np.ptp(v)
    assert 0 <= part[i] <= 6


def test_deterministic(coma_template, coma_sampling):
  again = ms.build(*coma_template)
  for attr in ("adjacency", "laplacians", "down", "up"):
    for x, y in zip(getattr(coma_sampling, attr), getattr(again, attr)):
      for field in ("indptr", "indices", "data"):
        assert getattr(x, field).tobytes() == getattr(y, field).tobytes()
  for x, y in zip(coma_sampling.faces, again.faces):
    assert x.tobytes() == y.tobytes()


def test_cache_round_trip_stale_and_corrupt(tmp_path, caplog):
  v, f = wavy_grid(16)
  cache = str(tmp_path / "sampling")
  caplog.set_level(logging.INFO, logger="absl")  # absl may have been set quieter
  built = ms.load_or_build(v, f, (4, 4), cache)
  assert "building" in caplog.text
  assert sorted(os.listdir(cache))[:3] == ["adjacency0.npz", "adjacency1.npz", "adjacency2.npz"]
  assert os.path.exists(os.path.join(cache, "reference2.obj"))
  caplog.clear()
  loaded = ms.load_or_build(v, f, (4, 4), cache)
  assert "loaded" in caplog.text and loaded.sizes == built.sizes
  for x, y in zip(built.up, loaded.up):
    assert (x != y).nnz == 0
  caplog.clear()
  ms.load_or_build(v, f, (3, 3), cache)  # other factors: stale
  assert "stale" in caplog.text
  caplog.clear()
  with open(os.path.join(cache, "upsamp_trans0.npz"), "r+b") as fh:
    fh.seek(40)
    fh.write(b"garbage")
  rebuilt = ms.load_or_build(v, f, (3, 3), cache)
  assert "corrupt" in caplog.text and rebuilt.sizes == ms.level_sizes(len(v), (3, 3))
  caplog.clear()
  os.remove(os.path.join(cache, "manifest.json"))
  ms.load_or_build(v, f, (3, 3), cache)
  assert "rebuilding" in caplog.text


def test_cache_never_pickles(tmp_path):
  v, f = wavy_grid(10)
  cache = str(tmp_path / "s")
  ms.load_or_build(v, f, (2,), cache)
  for name in os.listdir(cache):
    if name.startswith("mesh"):
      with np.load(os.path.join(cache, name), allow_pickle=False) as data:
        assert {"vertices", "faces"} <= set(data.files)


@pytest.mark.parametrize("mutate,message", [
    (lambda v, f: (v, np.vstack([f, [[0, 1, len(v)]]])), "out of range"),
    (lambda v, f: (v, np.vstack([f, [[0, 0, 1]]])), "repeats a vertex"),
    (lambda v, f: (np.vstack([v, [[9.0, 9.0, 9.0]]]), f), "in no face"),
    (lambda v, f: (np.where(np.arange(len(v))[:, None] == 3, np.nan, v), f), "NaN"),
    (lambda v, f: (np.vstack([v, [[5.0, 5.0, 5.0]]]), np.vstack([f, [[f[0, 0], f[0, 2], len(v)]]])),
     "non-manifold edge"),
    (lambda v, f: (v, np.vstack([f, f[:1, ::-1]])), "duplicate faces"),
    (lambda v, f: (v, f.astype(np.float32)), "integer"),
])
def test_bad_template(mutate, message):
  v, f = wavy_grid(6)
  v, f = mutate(v, f)
  with pytest.raises(ms.MeshError, match=message):
    ms.build(v, f, factors=(2,))


def test_levels_too_small():
  v, f = wavy_grid(4)
  with pytest.raises(ms.MeshError, match="at least 3"):
    ms.build(v, f, factors=(4, 4, 4, 4))


def test_obj_round_trip_and_errors(tmp_path):
  v, f = wavy_grid(5)
  path = str(tmp_path / "m.obj")
  mesh_io.write_obj(path, v, f, colors=np.full((len(v), 3), 200, np.uint8), normals=v)
  rv, rf = mesh_io.read_obj(path)
  np.testing.assert_allclose(rv, v, atol=1e-6)
  np.testing.assert_array_equal(rf, f)
  bad = tmp_path / "bad.obj"
  bad.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 7\n")
  with pytest.raises(ValueError, match="bad.obj: face index 7 out of range"):
    mesh_io.read_obj(str(bad))
  bad.write_text("v 0 0 zero\n")
  with pytest.raises(ValueError, match="bad.obj:1: malformed"):
    mesh_io.read_obj(str(bad))


def _tree(directory):
  return sorted(os.path.relpath(os.path.join(d, n), directory)
                for d, _, names in os.walk(directory) for n in names)


@pytest.mark.parametrize("contents", [{"notes.txt": "mine"}, {"adjacency0.npz": "not ours"},
                                      {"manifest.json": "{}", "photo.jpg": "x"}])
def test_cache_writer_never_deletes_a_users_folder(tmp_path, contents):
  folder = tmp_path / "work"
  folder.mkdir()
  for name, text in contents.items():
    (folder / name).write_text(text)
  (folder / "sub").mkdir()
  (folder / "sub" / "deep.txt").write_text("keep")
  before = _tree(folder)
  v, f = wavy_grid(8)
  with pytest.raises(ms.CacheError, match="not a mesh-sampling cache"):
    ms.load_or_build(v, f, (2,), str(folder))
  with pytest.raises(ms.CacheError, match="not a mesh-sampling cache"):
    ms.save(ms.build(v, f, (2,)), str(folder), "key")
  with pytest.raises(ms.CacheError):
    ms.remove_cache(str(folder))
  assert _tree(folder) == before
  assert [p.name for p in tmp_path.iterdir()] == ["work"]  # no temporary folder left beside it


def test_cache_replaces_only_a_cache_and_leaves_no_temporaries(tmp_path):
  v, f = wavy_grid(8)
  empty = tmp_path / "empty"
  empty.mkdir()
  ms.load_or_build(v, f, (2,), str(empty))  # an empty folder is taken
  assert "manifest.json" in os.listdir(empty)
  ms.load_or_build(v, f, (3,), str(empty))  # a stale cache is replaced
  assert ms.load(str(empty)).sizes == ms.level_sizes(len(v), (3,))
  assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]
  a_file = tmp_path / "file"
  a_file.write_text("x")
  with pytest.raises(ms.CacheError, match="not a folder"):
    ms.load_or_build(v, f, (2,), str(a_file))
  assert a_file.read_text() == "x"
  ms.remove_cache(str(empty))
  assert not empty.exists()


@pytest.mark.parametrize("name", ["/dev/zero", "../outside.npz", "mesh0.npz/../../x.npz"])
def test_cache_manifest_names_only_its_own_files(tmp_path, name):
  v, f = wavy_grid(8)
  cache = tmp_path / "c"
  ms.load_or_build(v, f, (2,), str(cache))
  import json
  manifest = json.loads((cache / "manifest.json").read_text())
  manifest["files"][name] = "0" * 64
  (cache / "manifest.json").write_text(json.dumps(manifest))
  with pytest.raises(ms.CacheError, match="not a cache file name"):
    ms.load(str(cache))
