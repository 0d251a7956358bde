"""Raw BFM09 + expression basis -> BFM_model_front.mat, as Deep3D's `transferBFM09` (SPEC 2.4).

Inputs (Deep3D's `BFM/` folder names):
  01_MorphableModel.mat  BFM09: shapeMU/texMU [3R, 1], shapePC/texPC [3R, K], shapeEV/texEV [K, 1]
                         (R = 53,490 vertices, K = 199; shapes in micrometres, albedo 0-255).
  Exp_Pca.bin            Guo et al.: int32 k (79), float32 mean [3E] (unused), float32 basis
                         component-major [k, 3E] (E = 53,215 vertices).
  std_exp.txt            k expression standard deviations.
  BFM_exp_idx.mat        `trimIndex` [E, 1], 1-based raw-BFM vertex of each expression vertex.
  BFM_front_idx.mat      `idx` [N, 1], 1-based expression vertex of each front vertex (N = 35,709).
  facemodel_info.mat     topology and masks copied unchanged (tri, point_buf, keypoints, ...).

The arithmetic is Deep3D's, in the files' own dtypes: bases scaled by their
eigenvalues / standard deviations, shapes divided by 1e5 (micrometres ->
decimetres), the first 80 identity / 64 expression / 80 albedo components,
rows picked per vertex with xyz kept interleaved.
"""

import os

import numpy as np

from deep3dface import bfm, constants

# Keys copied from facemodel_info.mat into the front model.
INFO_KEYS = ("tri", "point_buf", "tri_mask2", "keypoints", "frontmask2_idx", "skinmask")
RAW_KEYS = ("shapeMU", "shapePC", "shapeEV", "texMU", "texPC", "texEV")


class ConversionError(bfm.ModelFormatError):
  """An input of the conversion is missing or malformed; one line naming the file."""


def _fail(path, message):
  raise ConversionError(f"{path}: {message}")


def _read_mat(path, keys):
  """`bfm.read_mat` of `keys`, each required to be a finite numeric array."""
  data = bfm.read_mat(path, list(keys))
  missing = [k for k in keys if k not in data]
  if missing:
    _fail(path, f"missing key(s) {', '.join(missing)}")
  for key in keys:
    value = data[key]
    if (not isinstance(value, np.ndarray) or not np.issubdtype(value.dtype, np.number) or
        not np.all(np.isfinite(value))):
      _fail(path, f"key '{key}' must be a finite numeric array")
  return data


def read_raw_bfm(path, id_dim=constants.ID_DIM, tex_dim=constants.TEX_DIM):
  """01_MorphableModel.mat -> dict of its six arrays, shapes checked (R vertices, K components)."""
  data = _read_mat(path, RAW_KEYS)
  for prefix, need in (("shape", id_dim), ("tex", tex_dim)):
    mu, pc, ev = data[prefix + "MU"], data[prefix + "PC"], data[prefix + "EV"]
    if mu.ndim != 2 or mu.shape[1] != 1 or mu.shape[0] % 3:
      _fail(path, f"key '{prefix}MU' has shape {list(mu.shape)}, expected [3R, 1]")
    if pc.ndim != 2 or pc.shape[0] != mu.shape[0] or pc.shape[1] < need:
      _fail(path, f"key '{prefix}PC' has shape {list(pc.shape)}, expected [{mu.shape[0]}, K] "
            f"with K >= {need}")
    if ev.size != pc.shape[1]:
      _fail(path, f"key '{prefix}EV' has {ev.size} values, expected K = {pc.shape[1]}")
  if data["shapeMU"].shape != data["texMU"].shape:
    _fail(path, f"shapeMU and texMU disagree on the vertex count "
          f"({data['shapeMU'].shape[0] // 3} vs {data['texMU'].shape[0] // 3})")
  return {k: data[k] for k in RAW_KEYS}


def read_expression_basis(path, num_vertices):
  """Exp_Pca.bin -> float32 basis `[3E, k]` (the stored mean is unused, as in Deep3D).

  Args:
    path: the binary file (little-endian int32 k, float32 mean [3E], float32
      basis [k, 3E]).
    num_vertices: E, the expression mesh's vertex count (len of trimIndex).
  """
  if not os.path.isfile(path):
    _fail(path, "no such file")
  raw = np.fromfile(path, np.uint8)
  if raw.size < 4:
    _fail(path, "truncated: no component count")
  k = int(raw[:4].view("<i4")[0])
  expected = 4 + 4 * 3 * num_vertices * (1 + k) if k > 0 else -1
  if raw.size != expected:
    _fail(path, f"size {raw.size} bytes does not match {k} components of {num_vertices} "
          f"vertices ({expected} bytes); truncated, or not the expression basis of "
          "this index file")
  values = raw[4:].view("<f4").astype(np.float32)
  basis = values[3 * num_vertices:].reshape(k, 3 * num_vertices).T
  if not np.all(np.isfinite(basis)):
    _fail(path, "basis contains NaN or infinite values")
  return basis


def read_std_exp(path, count):
  """std_exp.txt -> float64 `[count]`."""
  if not os.path.isfile(path):
    _fail(path, "no such file" if not os.path.exists(path) else "not a regular file")
  try:
    values = np.loadtxt(path, dtype=np.float64).reshape(-1)
  except (OSError, ValueError) as e:
    _fail(path, f"cannot read standard deviations ({str(e).splitlines()[0]})")
  if values.size != count or not np.all(np.isfinite(values)):
    _fail(path, f"expected {count} finite values (one per expression component), "
          f"got {values.size}")
  return values


def read_index(path, key, upper):
  """A 1-based index column from a .mat file -> 0-based int64 `[n]`, range-checked."""
  values = _read_mat(path, (key,))[key].reshape(-1)
  if values.size == 0 or not np.all(values == np.round(values)):
    _fail(path, f"key '{key}' must hold integer indices")
  values = values.astype(np.int64)
  if values.min() < 1 or values.max() > upper:
    _fail(path, f"key '{key}' has indices in [{values.min()}, {values.max()}], expected "
          f"1-based in [1, {upper}]")
  return values - 1


def _select_rows(base, vertices):
  """Rows of an interleaved-xyz basis `[3V, C]` for the given vertices, still interleaved."""
  return base.reshape(-1, 3, base.shape[1])[vertices].reshape(-1, base.shape[1])


def convert(raw_model_path, exp_basis_path, std_exp_path, exp_idx_path, front_idx_path,
            info_path, select_id_path=None):
  """Builds the BFM_model_front.mat dictionary (Deep3D's keys and dtypes).

  Args:
    raw_model_path, exp_basis_path, std_exp_path, exp_idx_path,
    front_idx_path, info_path: the inputs listed in the module docstring.
    select_id_path: optional select_vertex_id.mat (`select_id`, 1-based raw
      vertex per front vertex); when given, the composed index must equal it.

  Returns:
    dict ready for scipy.io.savemat, validated by `bfm.model_from_mat_dict`.

  Raises:
    ConversionError / bfm.ModelFormatError (its base class) naming the offending file.
  """
  raw = read_raw_bfm(raw_model_path)
  raw_vertices = raw["shapeMU"].shape[0] // 3
  exp_to_raw = read_index(exp_idx_path, "trimIndex", raw_vertices)
  front_to_exp = read_index(front_idx_path, "idx", len(exp_to_raw))
  front_to_raw = exp_to_raw[front_to_exp]
  if select_id_path is not None:
    select = read_index(select_id_path, "select_id", raw_vertices)
    if not np.array_equal(select, front_to_raw):
      _fail(select_id_path, "select_id disagrees with trimIndex[idx]; the index files come "
            "from different releases")
  exp_basis = read_expression_basis(exp_basis_path, len(exp_to_raw))
  if exp_basis.shape[1] < constants.EXP_DIM:
    _fail(exp_basis_path, f"has {exp_basis.shape[1]} components, expected >= "
          f"{constants.EXP_DIM}")
  std_exp = read_std_exp(std_exp_path, exp_basis.shape[1])
  info = _read_mat(info_path, INFO_KEYS)

  scale = 1.0 / constants.MESH_UNIT_PER_MICRON  # 1e5: micrometres -> decimetres
  id_base = (raw["shapePC"] * raw["shapeEV"].reshape(1, -1)) / scale
  tex_base = raw["texPC"] * raw["texEV"].reshape(1, -1)
  ex_base = (exp_basis * std_exp.reshape(1, -1)) / scale
  arrays = {
      "meanshape": (_select_rows(raw["shapeMU"], front_to_raw) / scale).reshape(1, -1),
      "meantex": _select_rows(raw["texMU"], front_to_raw).reshape(1, -1),
      "idBase": _select_rows(id_base[:, :constants.ID_DIM], front_to_raw),
      "exBase": _select_rows(ex_base[:, :constants.EXP_DIM], front_to_exp),
      "texBase": _select_rows(tex_base[:, :constants.TEX_DIM], front_to_raw),
  }
  arrays.update({key: info[key] for key in INFO_KEYS})
  n = len(front_to_raw)
  if info["point_buf"].shape[0] != n:
    _fail(info_path, f"point_buf has {info['point_buf'].shape[0]} rows but the index files "
          f"select {n} front vertices")
  bfm.model_from_mat_dict(arrays, info_path)
  return arrays
