"""Reference scenes for tests and benchmarks (numpy only, no TensorFlow).

`face_like_mesh` gives vertex positions to a face topology that ships without
them (e.g. the real BFM09 front-face triangles in facemodel_info.mat): a Tutte
embedding of the mesh into an ellipse, lifted onto a smooth face-sized dome,
in the Deep3D camera's units (decimetres, centred at the origin, facing +z).
"""

import numpy as np
import scipy.io
import scipy.sparse
import scipy.sparse.linalg

# Half-extents of the face-like surface in decimetres; with Deep3D's camera
# (f = 1015 px at 10 dm) it spans about 180 x 220 of a 224 x 224 image.
FACE_HALF_WIDTH = 0.85
FACE_HALF_HEIGHT = 1.05
FACE_DEPTH = 0.9


def cube():
  """Unit cube: vertices [8, 3] in [-1, 1], triangles [12, 3] (outward, CCW), normals [8, 3]."""
  vertices = np.array([[-1, -1, 1], [-1, -1, -1], [-1, 1, -1], [-1, 1, 1], [1, -1, 1],
                       [1, -1, -1], [1, 1, -1], [1, 1, 1]], np.float32)
  triangles = np.array([[0, 2, 1], [0, 3, 2], [3, 6, 2], [3, 7, 6], [7, 5, 6], [7, 4, 5],
                        [4, 1, 5], [4, 0, 1], [5, 2, 6], [5, 1, 2], [7, 0, 4], [7, 3, 0]],
                       np.int32)
  normals = vertices / np.linalg.norm(vertices, axis=1, keepdims=True)
  return vertices, triangles, normals


def grid_mesh(rows, cols, half_width=1.0, half_height=1.0):
  """A flat grid in z = 0: vertices [(rows+1)(cols+1), 3], triangles [2 rows cols, 3]."""
  ys, xs = np.meshgrid(np.linspace(-half_height, half_height, rows + 1),
                       np.linspace(-half_width, half_width, cols + 1), indexing="ij")
  vertices = np.stack([xs, ys, np.zeros_like(xs)], axis=-1).reshape(-1, 3).astype(np.float32)
  idx = np.arange((rows + 1) * (cols + 1)).reshape(rows + 1, cols + 1)
  a, b = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel()
  c, d = idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
  triangles = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
  return vertices, triangles.astype(np.int32)


def load_topology(path):
  """Reads `tri` (1-based, as in Deep3D's .mat files) and returns 0-based int32 [T, 3]."""
  try:
    mat = scipy.io.loadmat(path)
  except (OSError, ValueError) as e:
    raise ValueError(f"{path}: not a readable .mat file ({e})") from None
  if "tri" not in mat:
    raise ValueError(f"{path}: missing key 'tri' (expected [T, 3], 1-based)")
  tri = np.asarray(mat["tri"])
  if tri.ndim != 2 or tri.shape[1] != 3:
    raise ValueError(f"{path}: 'tri' has shape {tri.shape}, expected [T, 3]")
  if tri.min() < 1:
    raise ValueError(f"{path}: 'tri' has index {tri.min():g} < 1; expected 1-based indices")
  return (tri.astype(np.int64) - 1).astype(np.int32)


def boundary_loops(triangles):
  """Boundary loops of a manifold mesh as lists of vertex ids, longest first."""
  edges = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
  undirected = np.sort(edges, axis=1)
  uniq, counts = np.unique(undirected, axis=0, return_counts=True)
  boundary = {tuple(e) for e in uniq[counts == 1]}
  successor = {}
  for a, b in edges:  # directed boundary edges in face order form the loops
    if (min(a, b), max(a, b)) in boundary:
      successor[int(a)] = int(b)
  loops, seen = [], set()
  for start in sorted(successor):
    if start in seen:
      continue
    loop, v = [], start
    while v not in seen:
      seen.add(v)
      loop.append(v)
      v = successor[v]
    loops.append(loop)
  return sorted(loops, key=len, reverse=True)


def tutte_embedding(triangles, num_vertices):
  """Planar layout [V, 2] of a disk-like mesh: outer loop on the unit circle.

  Holes are closed with a virtual fan vertex so that the layout has no flipped
  triangles (Tutte's theorem).
  """
  loops = boundary_loops(triangles)
  if not loops:
    raise ValueError("mesh has no boundary; cannot embed it in the plane")
  tri = [np.asarray(triangles, np.int64)]
  n = num_vertices
  for hole in loops[1:]:
    ring = np.asarray(hole)
    tri.append(np.stack([np.roll(ring, -1), ring, np.full_like(ring, n)], 1))
    n += 1
  tri = np.concatenate(tri)
  rows = np.concatenate([tri[:, 0], tri[:, 1], tri[:, 2], tri[:, 1], tri[:, 2], tri[:, 0]])
  cols = np.concatenate([tri[:, 1], tri[:, 2], tri[:, 0], tri[:, 0], tri[:, 1], tri[:, 2]])
  adj = scipy.sparse.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)).tocsr()
  adj.data[:] = 1.0
  outer = np.asarray(loops[0])
  angles = 2 * np.pi * np.arange(len(outer)) / len(outer)
  fixed = np.zeros((n, 2))
  fixed[outer] = np.stack([np.cos(angles), np.sin(angles)], 1)
  is_free = np.ones(n, bool)
  is_free[outer] = False
  lap = scipy.sparse.diags(np.asarray(adj.sum(1)).ravel()) - adj
  free = np.flatnonzero(is_free)
  a = lap[free][:, free].tocsc()
  rhs = -(lap[free][:, outer] @ fixed[outer])
  solve = scipy.sparse.linalg.factorized(a)
  uv = fixed.copy()
  uv[free] = np.stack([solve(rhs[:, 0]), solve(rhs[:, 1])], 1)
  return uv[:num_vertices]


def face_like_mesh(triangles, num_vertices=None):
  """Face-sized smooth surface on a given topology.

  Returns:
    vertices float32 [V, 3] in decimetres, centred at the origin, facing +z
    (a dome with a nose-like bump), and unit vertex normals float32 [V, 3].
  """
  triangles = np.asarray(triangles)
  num_vertices = int(triangles.max()) + 1 if num_vertices is None else num_vertices
  uv = tutte_embedding(triangles, num_vertices)
  r2 = np.clip((uv ** 2).sum(1), 0.0, 1.0)
  nose = 0.25 * np.exp(-((uv[:, 0] / 0.12) ** 2 + ((uv[:, 1] + 0.05) / 0.25) ** 2))
  z = FACE_DEPTH * (np.sqrt(1.0 - 0.75 * r2) - 0.5) + nose
  vertices = np.stack([FACE_HALF_WIDTH * uv[:, 0], FACE_HALF_HEIGHT * uv[:, 1], z], 1)
  vertices -= vertices.mean(0)
  return vertices.astype(np.float32), vertex_normals(vertices, triangles)


def vertex_normals(vertices, triangles):
  """Area-weighted unit vertex normals [V, 3] for counter-clockwise triangles."""
  v = np.asarray(vertices, np.float64)
  t = np.asarray(triangles)
  face = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
  normals = np.zeros_like(v)
  for k in range(3):
    np.add.at(normals, t[:, k], face)
  # A consistent orientation facing the camera (+z) on average.
  if normals[:, 2].sum() < 0:
    normals = -normals
  norm = np.linalg.norm(normals, axis=1, keepdims=True)
  return (normals / np.maximum(norm, 1e-12)).astype(np.float32)
