"""Triangle-mesh files: OBJ reading, atomic OBJ writing (v [r g b], vn, f; 1-based), atomic
binary PLY writing (per-vertex colours and normals) and atomic glTF 2.0 binary (.glb) writing
(several vertex-coloured meshes of one shape)."""

import json
import math
import struct

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
    with open(path, "rb") as f:
      for number, raw in enumerate(f, 1):
        line = raw.decode("utf-8")
        parts = line.split()
        if not parts:
          continue
        if parts[0] == "v":
          vertex = [float(x) for x in parts[1:4]]
          if not all(math.isfinite(x) for x in vertex):
            raise ValueError(f"{path}:{number}: vertex coordinate is not finite "
                             f"{line.strip()!r}")
          vertices.append(vertex)
        elif parts[0] == "f":
          faces.extend(_face_triangles(path, number, line, parts, len(vertices)))
  except OSError as e:
    raise ValueError(f"{path}: cannot read OBJ ({e.strerror or e})") from None
  except UnicodeDecodeError:
    raise ValueError(f"{path}:{number}: not UTF-8 text; not an OBJ file") from None
  except ValueError as e:
    if str(e).startswith(f"{path}:"):
      raise
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
  corners = vertices[faces]
  areas = np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]),
                         axis=-1)
  if not np.any(areas > 0.0):
    raise ValueError(f"{path}: degenerate mesh (every triangle has zero area)")
  return vertices, faces.astype(np.int32)


MAX_OBJ_INDEX = 2**31 - 1  # int32 triangles


def _face_triangles(path, number, line, parts, num_vertices):
  """The fan triangles (0-based) of an `f` line; ValueError naming the line for index 0 (OBJ
  counts from 1), an index beyond int32 or a relative index before the first vertex."""
  ids = [int(p.split("/")[0]) for p in parts[1:]]
  if len(ids) < 3:
    raise ValueError(f"{path}:{number}: a face needs 3 or more vertices {line.strip()!r}")
  for i in ids:
    if i == 0 or abs(i) > MAX_OBJ_INDEX or (i < 0 and -i > num_vertices):
      raise ValueError(f"{path}:{number}: face index {i} out of range (OBJ indices count "
                       f"from 1; negative ones back from the {num_vertices} vertices so far)")
  ids = [i - 1 if i > 0 else num_vertices + i for i in ids]
  return [[ids[0], ids[k], ids[k + 1]] for k in range(1, len(ids) - 1)]


def write_obj(path, vertices, faces, colors=None, normals=None):
  """Writes an OBJ file atomically (temporary file + rename).

  Args:
    path: output file.
    vertices: `[V, 3]` positions.
    faces: `[T, 3]` 0-based triangles (written 1-based).
    colors: optional `[V, 3]` per-vertex colours appended to the `v` lines as written:
      floats in [0, 1] are what Deep3D's demo writes and what viewers (trimesh, Blender,
      MeshLab) read; integers are written as integers.
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


GLB_MAGIC, GLB_VERSION = 0x46546C67, 2  # "glTF", glTF 2.0 binary container
_JSON_CHUNK, _BIN_CHUNK = 0x4E4F534A, 0x004E4942  # "JSON", "BIN\0"
_FLOAT, _UINT32 = 5126, 5125  # glTF accessor component types
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963  # buffer-view targets


def srgb_to_linear(values):
  """sRGB-encoded values in [0, 1] -> linear light (IEC 61966-2-1); glTF vertex colours are
  linear, while photos and albedos are sRGB-encoded."""
  v = np.clip(np.asarray(values, np.float64), 0.0, 1.0)
  return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def write_glb(path, vertices, faces, colors, normals=None, spacing=0.0, generator="gcn-face"):
  """Writes a glTF 2.0 binary file atomically: one mesh per named colour set, sharing the
  positions, normals and triangles (one copy of each in the buffer), each its own node placed
  `spacing` apart along +x (0: all at the origin) so that a viewer shows them side by side.

  Args:
    path: output .glb file.
    vertices: `[V, 3]` positions, metres (glTF's unit).
    faces: `[T, 3]` 0-based triangles, counter-clockwise seen from the front (glTF's winding).
    colors: {name: `[V, 3]` sRGB-encoded RGB in [0, 1]}, in the order the meshes are wanted;
      stored as linear float COLOR_0 (glTF's convention) on a rough non-metallic material.
    normals: optional `[V, 3]` (normalised here; zero rows become +z).
    spacing: node offset along x between consecutive meshes, metres.
    generator: the asset's generator string.
  """
  vertices = np.ascontiguousarray(vertices, np.float32).reshape(-1, 3)
  faces = np.asarray(faces, np.int64).reshape(-1, 3)
  if len(vertices) == 0 or len(faces) == 0 or not colors:
    raise ValueError(f"{path}: a glTF mesh needs vertices, faces and at least one colour set")
  if faces.min() < 0 or faces.max() >= len(vertices):
    raise ValueError(f"{path}: face index out of range 0..{len(vertices) - 1}")
  if not np.all(np.isfinite(vertices)):
    raise ValueError(f"{path}: vertex positions contain NaN or infinity")
  blobs, views, accessors = [], [], []

  def add(array, accessor_type, target, bounds=False):
    data = np.ascontiguousarray(array)
    offset = sum(len(b) for b in blobs)
    blobs.append(data.tobytes() + b"\0" * (-data.nbytes % 4))
    views.append({"buffer": 0, "byteOffset": offset, "byteLength": data.nbytes,
                  "target": target})
    accessor = {"bufferView": len(views) - 1, "count": len(data),
                "componentType": _UINT32 if data.dtype == np.uint32 else _FLOAT,
                "type": accessor_type}
    if bounds:
      accessor["min"] = data.min(0).tolist()
      accessor["max"] = data.max(0).tolist()
    accessors.append(accessor)
    return len(accessors) - 1

  attributes = {"POSITION": add(vertices, "VEC3", _ARRAY_BUFFER, bounds=True)}
  if normals is not None:
    n = np.asarray(normals, np.float64).reshape(-1, 3)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.where(length > 1e-12, n / np.maximum(length, 1e-12), [0.0, 0.0, 1.0])
    attributes["NORMAL"] = add(n.astype(np.float32), "VEC3", _ARRAY_BUFFER)
  indices = add(faces.reshape(-1).astype(np.uint32), "SCALAR", _ELEMENT_ARRAY_BUFFER)
  meshes, nodes = [], []
  for i, (name, rgb) in enumerate(colors.items()):
    rgb = np.asarray(rgb, np.float64).reshape(-1, 3)
    if rgb.shape[0] != len(vertices):
      raise ValueError(f"{path}: colour set {name!r} has {rgb.shape[0]} rows for "
                       f"{len(vertices)} vertices")
    color = add(srgb_to_linear(rgb).astype(np.float32), "VEC3", _ARRAY_BUFFER)
    meshes.append({"name": name, "primitives": [{
        "attributes": dict(attributes, COLOR_0=color), "indices": indices, "material": 0,
        "mode": 4}]})
    nodes.append({"name": name, "mesh": i, "translation": [i * float(spacing), 0.0, 0.0]})
  binary = b"".join(blobs)
  document = {
      "asset": {"version": "2.0", "generator": generator},
      "scene": 0, "scenes": [{"nodes": list(range(len(nodes)))}], "nodes": nodes,
      "meshes": meshes,
      "materials": [{"name": "vertex colour", "doubleSided": True, "pbrMetallicRoughness": {
          "baseColorFactor": [1.0, 1.0, 1.0, 1.0], "metallicFactor": 0.0,
          "roughnessFactor": 0.8}}],
      "accessors": accessors, "bufferViews": views,
      "buffers": [{"byteLength": len(binary)}]}
  text = json.dumps(document, separators=(",", ":")).encode("utf-8")
  text += b" " * (-len(text) % 4)
  total = 12 + 8 + len(text) + 8 + len(binary)
  with atomic_file.atomic_path(path) as tmp, open(tmp, "wb") as f:
    f.write(struct.pack("<III", GLB_MAGIC, GLB_VERSION, total))
    f.write(struct.pack("<II", len(text), _JSON_CHUNK) + text)
    f.write(struct.pack("<II", len(binary), _BIN_CHUNK) + binary)
