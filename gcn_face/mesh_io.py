"""Triangle-mesh files: OBJ reading, atomic OBJ writing (v [r g b], vn, f; 1-based) and
atomic binary PLY writing (per-vertex colours and normals)."""


import numpy as np

from gcn_face import atomic_file


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
  with atomic_file.atomic_path(path) as tmp, open(tmp, "w") as f:
    f.write("\n".join(lines) + "\n")


def write_ply(path, vertices, faces, colors, normals=None):
  """Writes a binary little-endian PLY atomically: float32 x y z (nx ny nz), uchar red green
  blue per vertex, int32 triangles.

  Args:
    path: output file.
    vertices: `[V, 3]` positions.
    faces: `[T, 3]` 0-based triangles.
    colors: `[V, 3]` RGB in [0, 255] (rounded and clipped).
    normals: optional `[V, 3]`.
  """
  vertices = np.asarray(vertices, np.float32)
  fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
  if normals is not None:
    fields += [("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")]
  fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
  data = np.empty(len(vertices), fields)
  for i, name in enumerate("xyz"):
    data[name] = vertices[:, i]
    if normals is not None:
      data["n" + name] = np.asarray(normals, np.float32)[:, i]
  rgb = np.clip(np.round(np.asarray(colors, np.float64)), 0, 255).astype(np.uint8)
  for i, name in enumerate(("red", "green", "blue")):
    data[name] = rgb[:, i]
  faces = np.asarray(faces, np.int64)
  face_data = np.empty(len(faces), [("n", "u1"), ("v", "<i4", (3,))])
  face_data["n"], face_data["v"] = 3, faces
  names = {"<f4": "float", "u1": "uchar"}
  header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(vertices)}"]
  header += [f"property {names[t]} {n}" for n, t in fields]
  header += [f"element face {len(faces)}", "property list uchar int vertex_indices",
             "end_header"]
  with atomic_file.atomic_path(path) as tmp, open(tmp, "wb") as f:
    f.write(("\n".join(header) + "\n").encode("ascii"))
    f.write(data.tobytes())
    f.write(face_data.tobytes())
