"""The BFM09 front-face morphable model file (`BFM_model_front.mat`, SPEC 2.4).

`load_model` reads Deep3D's file (or one in the same schema, e.g. the synthetic
model of `deep3dface.synthetic`), validates every key, shape, dtype and index
range, and returns a `MorphableModel` whose index arrays are 0-based int32.
`save_model` writes the same schema (1-based indices, Deep3D's dtypes).
A bad file raises `ModelFormatError` with one line naming the file, the key and
what was expected.
"""

import dataclasses
import os

import numpy as np
import scipy.io

from deep3dface import constants


class ModelFormatError(ValueError):
  """A morphable-model file that does not follow the BFM_model_front.mat schema."""


@dataclasses.dataclass(frozen=True)
class MorphableModel:
  """A linear face model on a fixed triangle mesh (N vertices, F triangles).

  Attributes:
    mean_shape: float32 `[N, 3]` mean vertex positions, decimetres.
    id_base: float32 `[3N, 80]` identity basis (EV-scaled); rows interleave xyz.
    ex_base: float32 `[3N, 64]` expression basis (std-scaled).
    mean_tex: float32 `[N, 3]` mean albedo, RGB in [0, 255].
    tex_base: float32 `[3N, 80]` albedo basis, RGB units of [0, 255].
    triangles: int32 `[F, 3]` vertex indices, 0-based.
    point_buf: int32 `[N, 8]` incident triangles per vertex, 0-based; the
      padding value F points at an appended zero normal.
    keypoints: int32 `[68]` landmark vertex ids, 0-based.
    front_mask_idx: int32 `[M]` vertices of the small photometric face region.
    tri_mask2: int32 `[F2, 3]` triangles of that region, 0-based into
      `front_mask_idx`.
    skin_mask: bool `[N]` skin vertices (Deep3D's reflectance loss).
  """
  mean_shape: np.ndarray
  id_base: np.ndarray
  ex_base: np.ndarray
  mean_tex: np.ndarray
  tex_base: np.ndarray
  triangles: np.ndarray
  point_buf: np.ndarray
  keypoints: np.ndarray
  front_mask_idx: np.ndarray
  tri_mask2: np.ndarray
  skin_mask: np.ndarray

  @property
  def num_vertices(self):
    return self.mean_shape.shape[0]

  @property
  def num_triangles(self):
    return self.triangles.shape[0]


# key: (shape spec, kind). Shape specs use N (vertices), F (triangles),
# M (front-mask vertices), F2 (front-mask triangles); kind says how values are
# checked: basis/mean (finite floats), index (1-based integers), mask (0/1).
SCHEMA = {
    "meanshape": (("1", "3N"), "float"),
    "idBase": (("3N", str(constants.ID_DIM)), "float"),
    "exBase": (("3N", str(constants.EXP_DIM)), "float"),
    "meantex": (("1", "3N"), "float"),
    "texBase": (("3N", str(constants.TEX_DIM)), "float"),
    "tri": (("F", "3"), "index"),
    "point_buf": (("N", str(constants.POINT_BUF_WIDTH)), "index"),
    "keypoints": (("1", str(constants.NUM_KEYPOINTS)), "index"),
    "frontmask2_idx": (("M", "1"), "index"),
    "tri_mask2": (("F2", "3"), "index"),
    "skinmask": (("1", "N"), "mask"),
}


def _fail(path, message):
  raise ModelFormatError(f"{path}: {message}")


def read_mat(path, variable_names=None):
  """scipy.io.loadmat with one-line ModelFormatErrors for a missing or unreadable file."""
  if not os.path.isfile(path):
    _fail(path, "no such file")
  try:
    return scipy.io.loadmat(path, variable_names=variable_names)
  except Exception as e:  # scipy raises several types for corrupt files
    _fail(path, f"not a readable MATLAB .mat file ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")


def _resolve(spec, sizes):
  dims = []
  for s in spec:
    if s.isdigit():
      dims.append(int(s))
    elif s == "3N":
      dims.append(3 * sizes["N"])
    else:
      dims.append(sizes[s])
  return tuple(dims)


def _check_array(path, key, array, sizes):
  spec, kind = SCHEMA[key]
  expected = _resolve(spec, sizes)
  if array.shape != expected:
    named = "[" + ", ".join(spec) + "]"
    _fail(path, f"key '{key}' has shape {list(array.shape)}, expected {named} = "
          f"{list(expected)}")
  if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
    _fail(path, f"key '{key}' has dtype {array.dtype}, expected a real numeric array")
  if not np.all(np.isfinite(array)):
    _fail(path, f"key '{key}' contains NaN or infinite values")
  if kind in ("index", "mask") and not np.all(array == np.round(array)):
    _fail(path, f"key '{key}' contains non-integer values")


def _check_index(path, key, values, low, high, what):
  """Checks 1-based indices lie in [low, high]; explains 0-based confusion."""
  if values.size == 0:
    return
  lo, hi = int(values.min()), int(values.max())
  if lo == 0 and low == 1:
    _fail(path, f"key '{key}' contains index 0: indices must be 1-based ({what}), as in "
          "Deep3D's BFM_model_front.mat; was the file written 0-based?")
  if lo < low or hi > high:
    bad = lo if lo < low else hi
    _fail(path, f"key '{key}' contains index {bad}, out of range [{low}, {high}] ({what})")


def load_model(path):
  """Loads and validates a BFM_model_front.mat-schema file.

  Args:
    path: the .mat file (Deep3D's `BFM/BFM_model_front.mat`, or a synthetic one).

  Returns:
    MorphableModel with 0-based int32 index arrays and float32 bases.

  Raises:
    ModelFormatError: missing/unreadable file, missing key, wrong shape or
      dtype, non-finite values, or an index out of range (incl. 0-based files).
  """
  return model_from_mat_dict(read_mat(path), path)


def model_from_mat_dict(data, path):
  """Validates a BFM_model_front.mat dictionary (as `load_model`); `path` names it in errors."""
  missing = [k for k in SCHEMA if k not in data]
  if missing:
    _fail(path, f"missing key(s) {', '.join(missing)}; a BFM_model_front.mat has "
          f"{', '.join(SCHEMA)}")
  for key in SCHEMA:
    if not isinstance(data[key], np.ndarray) or data[key].ndim != 2:
      _fail(path, f"key '{key}' must be a 2-D array, got {type(data[key]).__name__} "
            f"with shape {getattr(data[key], 'shape', None)}")
  mean_shape = data["meanshape"]
  if mean_shape.shape[0] != 1 or mean_shape.shape[1] % 3:
    _fail(path, f"key 'meanshape' has shape {list(mean_shape.shape)}, expected [1, 3N]")
  sizes = {"N": mean_shape.shape[1] // 3, "F": data["tri"].shape[0],
           "M": data["frontmask2_idx"].shape[0], "F2": data["tri_mask2"].shape[0]}
  for key in SCHEMA:
    _check_array(path, key, data[key], sizes)
  n, f, m = sizes["N"], sizes["F"], sizes["M"]
  _check_index(path, "tri", data["tri"], 1, n, f"vertices 1..{n}")
  _check_index(path, "point_buf", data["point_buf"], 1, f + 1,
               f"triangles 1..{f}, padding {f + 1}")
  _check_index(path, "keypoints", data["keypoints"], 1, n, f"vertices 1..{n}")
  _check_index(path, "frontmask2_idx", data["frontmask2_idx"], 1, n, f"vertices 1..{n}")
  _check_index(path, "tri_mask2", data["tri_mask2"], 1, m, f"front-mask vertices 1..{m}")
  skin = data["skinmask"]
  if not np.all((skin == 0) | (skin == 1)):
    _fail(path, "key 'skinmask' must contain only 0 and 1")

  def to_index(key):
    return (np.asarray(data[key]) - 1).astype(np.int32)

  f32 = lambda key: np.asarray(data[key], np.float32)
  return MorphableModel(
      mean_shape=f32("meanshape").reshape(n, 3),
      id_base=f32("idBase"),
      ex_base=f32("exBase"),
      mean_tex=f32("meantex").reshape(n, 3),
      tex_base=f32("texBase"),
      triangles=to_index("tri"),
      point_buf=to_index("point_buf"),
      keypoints=to_index("keypoints").reshape(-1),
      front_mask_idx=to_index("frontmask2_idx").reshape(-1),
      tri_mask2=to_index("tri_mask2"),
      skin_mask=np.asarray(skin).reshape(-1) > 0.5,
  )


def model_to_mat_dict(model):
  """The BFM_model_front.mat dictionary of a model (1-based, Deep3D dtypes)."""
  one_based = lambda a: (np.asarray(a, np.float64) + 1.0)
  return {
      "meanshape": model.mean_shape.reshape(1, -1).astype(np.float32),
      "idBase": model.id_base.astype(np.float32),
      "exBase": model.ex_base.astype(np.float64),
      "meantex": model.mean_tex.reshape(1, -1).astype(np.float32),
      "texBase": model.tex_base.astype(np.float32),
      "tri": one_based(model.triangles),
      "point_buf": one_based(model.point_buf),
      "keypoints": one_based(model.keypoints).reshape(1, -1),
      "frontmask2_idx": one_based(model.front_mask_idx).reshape(-1, 1),
      "tri_mask2": one_based(model.tri_mask2),
      "skinmask": model.skin_mask.astype(np.float64).reshape(1, -1),
  }


def save_model(model, path):
  """Writes `model` as a BFM_model_front.mat-schema file, atomically."""
  save_mat_atomic(path, model_to_mat_dict(model), compress=True)


def save_mat_atomic(path, arrays, compress=False):
  """scipy.io.savemat through a temporary file in the same folder, then a rename."""
  tmp = f"{path}.tmp-{os.getpid()}.mat"
  try:
    scipy.io.savemat(tmp, arrays, do_compression=compress)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def point_buffer(triangles, num_vertices, width=constants.POINT_BUF_WIDTH):
  """Incident triangles per vertex, 0-based, padded with F (Deep3D's point_buf).

  Args:
    triangles: int `[F, 3]`, 0-based.
    num_vertices: N.
    width: slots per vertex (8 in Deep3D).

  Returns:
    int32 `[N, width]`; vertices with more than `width` incident triangles
    keep the first `width` in triangle order (Deep3D's file never exceeds 8).
  """
  triangles = np.asarray(triangles)
  f = len(triangles)
  buf = np.full((num_vertices, width), f, np.int32)
  count = np.zeros(num_vertices, np.int64)
  for t, tri in enumerate(triangles):
    for v in tri:
      if count[v] < width:
        buf[v, count[v]] = t
      count[v] += 1
  return buf
