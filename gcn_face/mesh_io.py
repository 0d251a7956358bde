"""Triangle-mesh files: OBJ reading and atomic OBJ writing (v [r g b], vn, f; 1-based)."""

import os

import numpy as np


def read_obj(path):
  """Reads an OBJ file.

  Args:
    path: OBJ file; `v x y z [r g b]` and `f a[/..] b c ...` lines (polygons are
      fanned into triangles, negative indices are relative); other lines ignored.

  Returns:
    vertices float64 `[V, 3]` and 0-based int32 triangles `[T, 3]`.

  Raises:
    ValueError: one line naming the file (and line) and the problem.
  """
  vertices, faces = [], []
  number, line = 0, ""
  try:
    with open(path) as f:
      for number, line in enumerate(f, 1):
        parts = line.split()
        if not parts:
          continue
        if parts[0] == "v":
          vertices.append([float(x) for x in parts[1:4]])
        elif parts[0] == "f":
          ids = [int(p.split("/")[0]) for p in parts[1:]]
          if len(ids) < 3:
            raise ValueError
          ids = [i - 1 if i > 0 else len(vertices) + i for i in ids]
          faces.extend([ids[0], ids[k], ids[k + 1]] for k in range(1, len(ids) - 1))
  except (OSError, UnicodeDecodeError) as e:
    raise ValueError(f"{path}: cannot read OBJ ({e})") from None
  except (ValueError, IndexError):
    raise ValueError(f"{path}:{number}: malformed line {line.strip()!r}") from None
  if any(len(v) != 3 for v in vertices):
    raise ValueError(f"{path}: a 'v' line has fewer than 3 coordinates")
  vertices = np.asarray(vertices, np.float64).reshape(-1, 3)
  faces = np.asarray(faces, np.int64).reshape(-1, 3)
  if len(vertices) == 0 or len(faces) == 0:
    raise ValueError(f"{path}: no vertices or faces")
  if faces.min() < 0 or faces.max() >= len(vertices):
    bad = faces.max() + 1 if faces.max() >= len(vertices) else faces.min() + 1
    raise ValueError(f"{path}: face index {bad} out of range 1..{len(vertices)}")
  return vertices, faces.astype(np.int32)


def write_obj(path, vertices, faces, colors=None, normals=None):
  """Writes an OBJ file atomically (temporary file + rename).

  Args:
    path: output file.
    vertices: `[V, 3]` positions.
    faces: `[T, 3]` 0-based triangles (written 1-based).
    colors: optional `[V, 3]` per-vertex colours appended to the `v` lines as
      written (e.g. integers 0-255 as in the original release's OBJ files).
    normals: optional `[V, 3]` per-vertex normals (`vn` lines).
  """
  vertices = np.asarray(vertices, np.float64)
  lines = []
  if colors is None:
    lines.extend(f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices)
  else:
    colors = np.asarray(colors)
    fmt = "{:d}" if np.issubdtype(colors.dtype, np.integer) else "{:.6f}"
    lines.extend(f"v {x:.6f} {y:.6f} {z:.6f} " + " ".join(fmt.format(c) for c in rgb)
                 for (x, y, z), rgb in zip(vertices, colors.tolist()))
  if normals is not None:
    lines.extend(f"vn {x:.6f} {y:.6f} {z:.6f}" for x, y, z in np.asarray(normals, np.float64))
  lines.extend(f"f {a} {b} {c}" for a, b, c in (np.asarray(faces, np.int64) + 1))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    f.write("\n".join(lines) + "\n")
  os.replace(tmp, path)
