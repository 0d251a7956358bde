"""CoMA mesh sampling: quadric decimation, down/up-sampling matrices, Laplacians (SPEC 4).

`build(vertices, faces, factors)` decimates a template mesh level by level
(each level keeps ceil(M / factor) vertices) with CoMA's QSlim-style greedy
edge collapse, and returns a `Sampling`: the meshes of every level, the
selection matrices D_l `[M_{l+1}, M_l]`, the barycentric upsampling matrices
U_l `[M_l, M_{l+1}]`, the adjacency A_l and the normalised Laplacians
L_l = I - D^-1/2 A D^-1/2 (all scipy CSR, float32).

The collapse order follows CoMA exactly, quirks included (lazy cost updates,
in-place renaming of queued edges, no link-condition check), so the same
template gives the same level sizes as the original; the implementation keeps
per-vertex face and queue-entry sets so one collapse costs O(valence) instead
of CoMA's O(F + queue) scans. `load_or_build` caches everything as
`scipy.sparse.save_npz` / `numpy.savez` files (never pickle) with a manifest
holding a hash of the input and of every file; a stale or corrupt cache is
rebuilt, with a log line saying why.
"""

import dataclasses
import hashlib
import heapq
import json
import math
import os
import re
import tempfile
import zipfile

import numpy as np
import scipy.sparse
import scipy.spatial
from absl import logging

from gcn_face import mesh_io

DEFAULT_FACTORS = (4, 4, 4, 4)  # CoMA and 3D-Face-GCNs
CACHE_FORMAT = 1  # bump when the algorithm or the file layout changes
_CANDIDATE_TRIANGLES = 8  # nearest centroids whose distance bounds the closest-point search


class MeshError(ValueError):
  """A template mesh (or requested decimation) the sampling cannot work with."""


@dataclasses.dataclass(frozen=True)
class Sampling:
  """Mesh hierarchy and sampling matrices for levels 0 (template) .. n.

  Attributes:
    vertices: list of float64 `[M_l, 3]`; coarse levels keep the surviving
      template vertices' positions.
    faces: list of int32 `[F_l, 3]` 0-based triangles per level.
    adjacency: list of CSR float32 `[M_l, M_l]` (interior edges 2, boundary 1).
    laplacians: list of CSR float32 `[M_l, M_l]`, I - D^-1/2 A D^-1/2.
    down: list of CSR float32 `[M_{l+1}, M_l]`, one 1 per row (the survivors in
      ascending template order).
    up: list of CSR float32 `[M_l, M_{l+1}]`, barycentric weights of the closest
      point on the coarse surface.
  """
  vertices: list
  faces: list
  adjacency: list
  laplacians: list
  down: list
  up: list

  @property
  def sizes(self):
    return [len(v) for v in self.vertices]


def _triangle_edges(faces):
  """Directed edges `[3F, 2]` of triangles: all (a, b), then (b, c), then (c, a)."""
  f = np.asarray(faces)
  return np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])


def check_mesh(vertices, faces, name="mesh"):
  """Validates a template mesh; returns (float64 `[V, 3]`, int32 `[F, 3]`).

  Raises MeshError (one line naming `name`) for non-finite vertices, face
  indices out of range, repeated vertices within a face, unreferenced
  vertices, duplicate faces, or edges shared by more than two faces.
  """
  v = np.asarray(vertices, np.float64)
  f = np.asarray(faces)
  if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
    raise MeshError(f"{name}: vertices have shape {v.shape}, expected [V, 3]")
  if not np.all(np.isfinite(v)):
    raise MeshError(f"{name}: vertices contain NaN or Inf")
  if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0 or not np.issubdtype(f.dtype, np.integer):
    raise MeshError(f"{name}: faces have shape {f.shape} and dtype {f.dtype}, expected integer [F, 3]")
  if f.min() < 0 or f.max() >= len(v):
    bad = f.min() if f.min() < 0 else f.max()
    raise MeshError(f"{name}: face index {bad} out of range [0, {len(v)}) (0-based)")
  f = f.astype(np.int32)
  repeats = np.flatnonzero((f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 2] == f[:, 0]))
  if len(repeats):
    raise MeshError(f"{name}: face {repeats[0]} repeats a vertex")
  unused = np.setdiff1d(np.arange(len(v)), f)
  if len(unused):
    raise MeshError(f"{name}: {len(unused)} vertices are in no face (first: {unused[0]})")
  if len(np.unique(np.sort(f, axis=1), axis=0)) != len(f):
    raise MeshError(f"{name}: duplicate faces")
  edges = np.sort(_triangle_edges(f), axis=1)
  uniq, counts = np.unique(edges, axis=0, return_counts=True)
  if counts.max() > 2:
    a, b = uniq[np.argmax(counts)]
    raise MeshError(f"{name}: non-manifold edge ({a}, {b}) shared by {counts.max()} faces")
  return v, f


def vertex_quadrics(vertices, faces):
  """CoMA's per-vertex error quadrics `[V, 4, 4]` (float64).

  Each face contributes p p^T, p its plane (last right-singular vector of
  [v_i, 1], scaled to a unit normal), to each of its three vertices.
  """
  v = np.asarray(vertices, np.float64)
  f = np.asarray(faces)
  homogeneous = np.concatenate([v[f], np.ones(f.shape + (1,))], axis=2)  # [F, 3, 4]
  planes = np.linalg.svd(homogeneous)[2][:, -1, :]
  planes = planes / np.sqrt((planes[:, :3] ** 2).sum(1, keepdims=True))
  quadrics = np.zeros((len(v), 4, 4))
  outer = planes[:, :, None] * planes[:, None, :]
  np.add.at(quadrics, f.ravel(), np.repeat(outer, 3, axis=0))
  return quadrics


def _point_cost(q, p):
  """p^T Q p for homogeneous p = (x, y, z, 1), Q as 16 floats, row by row, left to right."""
  x, y, z = p
  t0 = q[0] * x + q[1] * y + q[2] * z + q[3]
  t1 = q[4] * x + q[5] * y + q[6] * z + q[7]
  t2 = q[8] * x + q[9] * y + q[10] * z + q[11]
  t3 = q[12] * x + q[13] * y + q[14] * z + q[15]
  return x * t0 + y * t1 + z * t2 + t3


def _edge_order(faces):
  """Unique edges (r < c) in CoMA's queue-building order: by c, then r."""
  edges = np.unique(np.sort(_triangle_edges(np.asarray(faces, np.int64)), axis=1), axis=0)
  return edges[np.lexsort((edges[:, 0], edges[:, 1]))]


def _ring(vertex, vertex_faces, face_list):
  """{neighbour: number of the vertex's faces that contain it} (1 = boundary edge)."""
  ring = {}
  for index in vertex_faces[vertex]:
    for other in face_list[index]:
      if other != vertex:
        ring[other] = ring.get(other, 0) + 1
  return ring


def _keeps_manifold(keep, gone, vertex_faces, face_list):
  """Link condition: the collapse creates no non-manifold edge or pinched vertex."""
  ring_keep = _ring(keep, vertex_faces, face_list)
  ring_gone = _ring(gone, vertex_faces, face_list)
  shared = vertex_faces[keep] & vertex_faces[gone]
  opposite = {w for index in shared for w in face_list[index] if w != keep and w != gone}
  if (ring_keep.keys() & ring_gone.keys()) - {keep, gone} != opposite:
    return False
  on_boundary = lambda ring: any(count == 1 for count in ring.values())
  return len(shared) == 1 or not (on_boundary(ring_keep) and on_boundary(ring_gone))


def decimate(vertices, faces, num_vertices, link_condition=True):
  """Greedy quadric edge collapse to at most `num_vertices` vertices (CoMA).

  Args:
    vertices: `[V, 3]` positions.
    faces: `[F, 3]` 0-based triangles (every vertex referenced).
    num_vertices: stop once the faces reference at most this many vertices.
    link_condition: skip collapses that would make the mesh non-manifold (an
      edge in more than two faces, or two boundaries pinched together). CoMA
      has no such check (False reproduces it exactly); on the CoMA template it
      produces non-manifold levels.

  Returns:
    (kept, new_faces): int64 `[M]` surviving template vertex ids in ascending
    order, and int32 `[F', 3]` faces re-indexed into `kept` (surviving faces
    in their original order).
  """
  v = np.asarray(vertices, np.float64)
  faces = np.array(faces, np.int64)
  n = len(v)
  points = v.tolist()
  quadrics = vertex_quadrics(v, faces).reshape(n, 16).tolist()
  face_list = faces.tolist()
  vertex_faces = [set() for _ in range(n)]
  for index, face in enumerate(face_list):
    for vertex in face:
      vertex_faces[vertex].add(index)
  queued = [dict() for _ in range(n)]  # vertex -> {id(entry): entry}; entries are [cost, r, c]
  heap = []

  def push(cost, r, c):
    entry = [cost, r, c]
    heapq.heappush(heap, entry)
    queued[r][id(entry)] = entry
    queued[c][id(entry)] = entry

  def costs(r, c):
    q = [a + b for a, b in zip(quadrics[r], quadrics[c])]
    return q, _point_cost(q, points[r]), _point_cost(q, points[c])

  for r, c in _edge_order(faces).tolist():
    _, destroy_c, destroy_r = costs(r, c)
    push(min(destroy_c, destroy_r), r, c)

  alive = sum(1 for s in vertex_faces if s)
  while alive > num_vertices:
    if not heap:
      raise MeshError(f"cannot decimate to {num_vertices} vertices: no edges left at {alive}")
    entry = heapq.heappop(heap)
    queued_cost, r, c = entry
    queued[r].pop(id(entry), None)
    queued[c].pop(id(entry), None)
    if r == c:
      continue
    q, destroy_c, destroy_r = costs(r, c)
    if min(destroy_c, destroy_r) > queued_cost:
      push(min(destroy_c, destroy_r), r, c)
      continue
    keep, gone = (r, c) if destroy_c < destroy_r else (c, r)
    if link_condition and not _keeps_manifold(keep, gone, vertex_faces, face_list):
      continue
    had_keep = bool(vertex_faces[keep])
    for index in vertex_faces[gone]:
      face = face_list[index]
      face[face.index(gone)] = keep
      if face.count(keep) > 1:  # collapsed edge: the face degenerates and is dropped
        for vertex in set(face):
          if vertex != keep:
            vertex_faces[vertex].discard(index)
            if not vertex_faces[vertex] and vertex != gone:
              alive -= 1
        vertex_faces[keep].discard(index)
        face_list[index] = None
      else:
        vertex_faces[keep].add(index)
    if vertex_faces[gone]:
      alive -= 1
    vertex_faces[gone] = set()
    if had_keep and not vertex_faces[keep]:
      alive -= 1
    elif not had_keep and vertex_faces[keep]:
      alive += 1
    for key, moved in queued[gone].items():
      if moved[1] == gone:
        moved[1] = keep
      if moved[2] == gone:
        moved[2] = keep
      queued[keep][key] = moved
    queued[gone] = {}
    quadrics[r] = q
    quadrics[c] = q
  remaining = np.asarray([face for face in face_list if face is not None], np.int64).reshape(-1, 3)
  kept = np.unique(remaining)
  remap = np.full(n, -1, np.int64)
  remap[kept] = np.arange(len(kept))
  return kept, remap[remaining].astype(np.int32)


def _closest_on_triangles(p, a, b, c):
  """Closest points of p on triangles (a, b, c), all `[P, 3]` (Ericson's regions).

  Returns (points `[P, 3]`, part `[P]`): 0 interior, 1-3 edges ab/bc/ca,
  4-6 corners a/b/c (the convention of CoMA's AABB-tree query).
  """
  dot = lambda x, y: np.einsum("ij,ij->i", x, y)
  ab, ac, ap = b - a, c - a, p - a
  d1, d2 = dot(ab, ap), dot(ac, ap)
  bp = p - b
  d3, d4 = dot(ab, bp), dot(ac, bp)
  cp = p - c
  d5, d6 = dot(ab, cp), dot(ac, cp)
  vc = d1 * d4 - d3 * d2
  vb = d5 * d2 - d1 * d6
  va = d3 * d6 - d5 * d4
  with np.errstate(divide="ignore", invalid="ignore"):
    t_ab = d1 / (d1 - d3)
    t_ac = d2 / (d2 - d6)
    t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
    denom = 1.0 / (va + vb + vc)
  conditions = [
      (d1 <= 0) & (d2 <= 0),
      (d3 >= 0) & (d4 <= d3),
      (vc <= 0) & (d1 >= 0) & (d3 <= 0),
      (d6 >= 0) & (d5 <= d6),
      (vb <= 0) & (d2 >= 0) & (d6 <= 0),
      (va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0),
  ]
  parts = np.select(conditions, [4, 5, 1, 6, 3, 2], default=0)
  t = lambda x: np.nan_to_num(x)[:, None]
  choices = [a, b, a + t(t_ab) * ab, c, a + t(t_ac) * ac, b + t(t_bc) * (c - b),
             a + ab * t(vb * denom) + ac * t(vc * denom)]
  closest = choices[6].copy()
  for part, point in zip([4, 5, 1, 6, 3, 2], choices[:6]):
    closest[parts == part] = point[parts == part]
  return closest, parts


def closest_points(points, vertices, faces, chunk=200_000):
  """Closest point on a triangle mesh for each query point.

  Exact: candidate triangles are all those whose bounding sphere (around the
  centroid) intersects the ball of the best distance among the nearest
  centroids. Ties go to the lowest face index.

  Args:
    points: `[P, 3]` query points.
    vertices, faces: the mesh (`[V, 3]`, 0-based `[F, 3]`).

  Returns:
    face int64 `[P]`, part int64 `[P]` (see `_closest_on_triangles`), closest
    point float64 `[P, 3]`.
  """
  points = np.asarray(points, np.float64)
  v = np.asarray(vertices, np.float64)
  f = np.asarray(faces, np.int64)
  corners = v[f]
  centroids = corners.mean(1)
  radii = np.sqrt(((corners - centroids[:, None]) ** 2).sum(-1).max(1))
  tree = scipy.spatial.cKDTree(centroids)
  k = min(_CANDIDATE_TRIANGLES, len(f))
  _, near = tree.query(points, k=k)
  near = near.reshape(len(points), k)

  def distances(query_ids, face_ids):
    closest, parts = _closest_on_triangles(points[query_ids], *(corners[face_ids].transpose(1, 0, 2)))
    return ((closest - points[query_ids]) ** 2).sum(1), closest, parts

  query_ids = np.repeat(np.arange(len(points)), k)
  bound = distances(query_ids, near.ravel())[0].reshape(-1, k).min(1)
  balls = tree.query_ball_point(points, np.sqrt(bound) * (1 + 1e-9) + radii.max() + 1e-12)
  counts = np.fromiter((len(b) for b in balls), np.int64, len(balls))
  query_ids = np.repeat(np.arange(len(points)), counts)
  face_ids = np.fromiter((i for b in balls for i in b), np.int64, counts.sum())
  keep = np.linalg.norm(centroids[face_ids] - points[query_ids], axis=1) - radii[face_ids] <= np.sqrt(bound[query_ids]) * (1 + 1e-9) + 1e-12
  query_ids, face_ids = query_ids[keep], face_ids[keep]
  order = np.lexsort((face_ids, query_ids))
  query_ids, face_ids = query_ids[order], face_ids[order]
  best_d = np.full(len(points), np.inf)
  best_face = np.zeros(len(points), np.int64)
  best_part = np.zeros(len(points), np.int64)
  best_point = np.zeros((len(points), 3))
  for start in range(0, len(query_ids), chunk):
    q, fi = query_ids[start:start + chunk], face_ids[start:start + chunk]
    d, closest, parts = distances(q, fi)
    # first minimum per query in (query, face) order: the lowest face index wins ties
    order = np.lexsort((fi, d, q))
    first = np.ones(len(order), bool)
    first[1:] = q[order][1:] != q[order][:-1]
    sel = order[first]
    better = d[sel] < best_d[q[sel]]
    sel = sel[better]
    best_d[q[sel]] = d[sel]
    best_face[q[sel]] = fi[sel]
    best_part[q[sel]] = parts[sel]
    best_point[q[sel]] = closest[sel]
  return best_face, best_part, best_point


def _lstsq(a, b):
  """Batched least squares min ||a x - b|| (numpy.linalg.lstsq's default cutoff)."""
  u, s, vh = np.linalg.svd(a, full_matrices=False)
  cutoff = np.finfo(np.float64).eps * max(a.shape[1:]) * s[:, :1]
  inv = np.where(s > cutoff, 1.0 / np.where(s > cutoff, s, 1.0), 0.0)
  return np.einsum("bji,bj,bkj,bk->bi", vh, inv, u, b)


def upsampling_matrix(fine_vertices, coarse_vertices, coarse_faces, coma_edge_weights=False):
  """CoMA's upsampling matrix U `[M_fine, M_coarse]` (CSR float32).

  For each fine vertex, the closest point on the coarse surface decides the
  weights: inside a triangle, the 3x3 least-squares solution of
  [v_a v_b v_c] w = closest point; on an edge, the 2-column least-squares
  solution for the closest point (non-negative, summing to 1); at a corner,
  weight 1 (SPEC 4).

  Args:
    fine_vertices: `[M_fine, 3]`.
    coarse_vertices, coarse_faces: the coarse mesh.
    coma_edge_weights: fit the fine vertex itself instead of its closest point
      on edges, as CoMA does; that gives negative weights and row sums off 1
      by a few percent where the fine vertex lies off the coarse surface.
  """
  fine = np.asarray(fine_vertices, np.float64)
  cv = np.asarray(coarse_vertices, np.float64)
  cf = np.asarray(coarse_faces, np.int64)
  face, part, closest = closest_points(fine, cv, cf)
  tri = cf[face]
  weights = np.zeros((len(fine), 3))
  inside = part == 0
  if inside.any():
    weights[inside] = _lstsq(cv[tri[inside]].transpose(0, 2, 1), closest[inside])
  on_edge = (part >= 1) & (part <= 3)
  if on_edge.any():
    first = part[on_edge] - 1
    second = part[on_edge] % 3
    ends = np.stack([tri[on_edge, first], tri[on_edge, second]], 1)
    target = fine[on_edge] if coma_edge_weights else closest[on_edge]
    w = _lstsq(cv[ends].transpose(0, 2, 1), target)
    rows = np.flatnonzero(on_edge)
    weights[rows, first] = w[:, 0]
    weights[rows, second] = w[:, 1]
  corner = part >= 4
  weights[np.flatnonzero(corner), part[corner] - 4] = 1.0
  matrix = scipy.sparse.csr_matrix(
      (weights.ravel(), (np.repeat(np.arange(len(fine)), 3), tri.ravel())),
      shape=(len(fine), len(cv)))
  matrix.eliminate_zeros()
  return matrix.astype(np.float32)


def adjacency(faces, num_vertices):
  """Vertex adjacency `[V, V]` CSR float32: +1 per triangle edge, both directions."""
  edges = _triangle_edges(np.asarray(faces, np.int64))
  rows = np.concatenate([edges[:, 0], edges[:, 1]])
  cols = np.concatenate([edges[:, 1], edges[:, 0]])
  matrix = scipy.sparse.csr_matrix((np.ones(len(rows)), (rows, cols)),
                                   shape=(num_vertices, num_vertices))
  matrix.sum_duplicates()
  return matrix.astype(np.float32)


def normalized_laplacian(adjacency_matrix):
  """L = I - D^-1/2 A D^-1/2 (D = column sums + the smallest float64), CSR float32."""
  a = scipy.sparse.csr_matrix(adjacency_matrix, dtype=np.float64)
  degree = np.asarray(a.sum(axis=0)).ravel() + np.spacing(np.float64(0))
  scale = scipy.sparse.diags(1.0 / np.sqrt(degree))
  lap = scipy.sparse.identity(a.shape[0], format="csr") - scale @ a @ scale
  lap = scipy.sparse.csr_matrix(lap)
  lap.sort_indices()
  return lap.astype(np.float32)


def level_sizes(num_vertices, factors):
  """Vertex counts of every level: M_{l+1} = ceil(M_l / factor_l) (CoMA)."""
  sizes = [int(num_vertices)]
  for factor in factors:
    if factor < 1:
      raise MeshError(f"decimation factor {factor} < 1")
    sizes.append(math.ceil(sizes[-1] * (1.0 / factor)))
  return sizes


def build(vertices, faces, factors=DEFAULT_FACTORS, name="template", coma_edge_weights=False,
          link_condition=True):
  """Builds the full sampling hierarchy of a template mesh.

  Args:
    vertices: `[V, 3]` template positions (any unit; only ratios matter).
    faces: `[F, 3]` 0-based triangles; a manifold mesh whose every vertex is
      in a face. Its order is the order that normals and rendering use.
    factors: decimation factor per level.
    name: how errors name the mesh.
    coma_edge_weights: CoMA's upsampling weights on edges (see
      `upsampling_matrix`).
    link_condition: refuse non-manifold collapses (see `decimate`); False
      reproduces CoMA.

  Returns:
    Sampling with len(factors) + 1 levels.

  Raises:
    MeshError: invalid template, or a level that would keep fewer than 3
      vertices.
  """
  v, f = check_mesh(vertices, faces, name)
  sizes = level_sizes(len(v), factors)
  if sizes[-1] < 3:
    raise MeshError(f"{name}: factors {tuple(factors)} leave {sizes[-1]} vertices at level "
                    f"{len(factors)} (sizes {sizes}); a level needs at least 3")
  meshes_v, meshes_f, down, up = [v], [f], [], []
  for level, target in enumerate(sizes[1:]):
    kept, coarse_f = decimate(meshes_v[-1], meshes_f[-1], target, link_condition)
    coarse_v = meshes_v[-1][kept]
    d = scipy.sparse.csr_matrix((np.ones(len(kept), np.float32), (np.arange(len(kept)), kept)),
                                shape=(len(kept), len(meshes_v[-1])))
    down.append(d)
    up.append(upsampling_matrix(meshes_v[-1], coarse_v, coarse_f, coma_edge_weights))
    meshes_v.append(coarse_v)
    meshes_f.append(coarse_f)
    logging.info("mesh sampling: level %d -> %d: %d vertices, %d faces", level, level + 1,
                 len(coarse_v), len(coarse_f))
  adj = [adjacency(fl, len(vl)) for vl, fl in zip(meshes_v, meshes_f)]
  return Sampling(vertices=meshes_v, faces=meshes_f, adjacency=adj,
                  laplacians=[normalized_laplacian(a) for a in adj], down=down, up=up)


# ---------------------------------------------------------------------------- cache

_MATRIX_FILES = (("adjacency", "adjacency"), ("laplacians", "laplacians"),
                 ("downsamp_trans", "down"), ("upsamp_trans", "up"))  # the release's names


def cache_key(vertices, faces, factors, coma_edge_weights=False, link_condition=True):
  """SHA-256 of the template (float64 vertices, int32 faces), options and cache format."""
  h = hashlib.sha256()
  h.update(np.ascontiguousarray(vertices, np.float64).tobytes())
  h.update(np.ascontiguousarray(faces, np.int32).tobytes())
  h.update(json.dumps({"factors": [float(x) for x in factors], "format": CACHE_FORMAT,
                       "coma_edge_weights": bool(coma_edge_weights),
                       "link_condition": bool(link_condition)}).encode())
  return h.hexdigest()


def _sha256(path):
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


_CACHE_FILE = re.compile(r"(adjacency|laplacians|downsamp_trans|upsamp_trans|mesh)\d+\.npz|"
                         r"reference\d+\.obj|manifest\.json")


def _is_regular_file(path):
  return os.path.isfile(path) and not os.path.islink(path)


def _is_cache_file(directory, name):
  """Whether `name` in `directory` is a regular file of a name `save` writes."""
  return bool(_CACHE_FILE.fullmatch(name)) and _is_regular_file(os.path.join(directory, name))


def _is_cache_folder(directory):
  """Whether a folder holds nothing but files of the names `save` writes (the release's
  cache, without a manifest, counts too)."""
  try:
    names = os.listdir(directory)
  except OSError:
    return False
  return all(_is_cache_file(directory, n) for n in names)


def check_writable_cache(directory):
  """CacheError unless `directory` is absent, an empty folder or a sampling cache: `save`
  replaces nothing else (a user's folder given as the cache is never emptied)."""
  if not os.path.lexists(directory):
    return
  if os.path.islink(directory) or not os.path.isdir(directory):
    raise CacheError(f"{directory}: exists and is not a folder; choose another cache folder")
  if os.listdir(directory) and not _is_cache_folder(directory):
    raise CacheError(f"{directory}: a non-empty folder that is not a mesh-sampling cache; "
                     "refusing to overwrite it (choose an empty or new folder)")


def save(sampling, directory, key):
  """Writes the cache into `directory` atomically: a fresh temporary folder beside it,
  renamed into place.

  `directory` may be absent, empty, or an earlier cache (replaced: only its cache files are
  removed); anything else raises CacheError and nothing is touched.
  Files: {adjacency,laplacians}{0..n}.npz, {downsamp_trans,upsamp_trans}{0..n-1}.npz
  (scipy.sparse.save_npz), mesh{0..n}.npz (vertices, faces), reference{0..n}.obj
  for viewing, and manifest.json (key, sizes, SHA-256 of each file).
  """
  directory = os.path.abspath(directory)
  check_writable_cache(directory)
  parent = os.path.dirname(directory)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".sampling-", dir=parent)
  old = None
  try:
    files = []
    for prefix, attr in _MATRIX_FILES:
      for i, matrix in enumerate(getattr(sampling, attr)):
        files.append(f"{prefix}{i}.npz")
        scipy.sparse.save_npz(os.path.join(tmp, files[-1]), matrix.tocsr())
    for i, (v, f) in enumerate(zip(sampling.vertices, sampling.faces)):
      files.append(f"mesh{i}.npz")
      np.savez(os.path.join(tmp, files[-1]), vertices=v, faces=f)
      mesh_io.write_obj(os.path.join(tmp, f"reference{i}.obj"), v, f)
    manifest = {"key": key, "format": CACHE_FORMAT, "sizes": sampling.sizes,
                "files": {name: _sha256(os.path.join(tmp, name)) for name in files}}
    with open(os.path.join(tmp, "manifest.json"), "w") as fh:
      json.dump(manifest, fh, indent=1)
    check_writable_cache(directory)  # again: the folder may have changed while building
    if os.path.isdir(directory):
      old = tempfile.mkdtemp(prefix=".sampling-old-", dir=parent)
      os.rename(directory, os.path.join(old, "cache"))
    os.rename(tmp, directory)
  finally:
    if os.path.isdir(tmp):
      _remove_cache_files(tmp)
    if old is not None:
      _remove_cache_files(os.path.join(old, "cache"))
      _remove_cache_files(old)


def remove_cache(directory):
  """Deletes a sampling cache folder (absent: nothing to do); CacheError for a folder that is
  not one, which stays as it is."""
  check_writable_cache(directory)
  if os.path.isdir(directory):
    _remove_cache_files(directory)


def _remove_cache_files(directory):
  """Removes the files `save` writes from a folder this module made, then the folder if it
  is empty (a file of any other name stays, and so does the folder)."""
  try:
    names = os.listdir(directory)
  except OSError:
    return
  for name in names:
    if _is_cache_file(directory, name):
      os.remove(os.path.join(directory, name))
  try:
    os.rmdir(directory)
  except OSError:
    pass


class CacheError(ValueError):
  """A sampling cache that is missing, stale or corrupt."""


def load(directory, key=None):
  """Reads a cache written by `save`; checks the key (if given) and every file's hash."""
  manifest_path = os.path.join(directory, "manifest.json")
  if os.path.lexists(manifest_path) and not _is_regular_file(manifest_path):
    raise CacheError(f"{manifest_path}: not a regular file")
  try:
    with open(manifest_path) as fh:
      manifest = json.load(fh)
    files, sizes = manifest["files"], manifest["sizes"]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise CacheError(f"{manifest_path}: unreadable manifest ({e})") from None
  if manifest.get("format") != CACHE_FORMAT:
    raise CacheError(f"{manifest_path}: cache format {manifest.get('format')}, expected {CACHE_FORMAT}")
  if key is not None and manifest.get("key") != key:
    raise CacheError(f"{directory}: built for another template or factors (stale)")
  if not isinstance(files, dict):
    raise CacheError(f"{manifest_path}: 'files' is not a mapping")
  for name, digest in files.items():
    path = os.path.join(directory, name)
    if not _CACHE_FILE.fullmatch(str(name)) or name == "manifest.json":
      raise CacheError(f"{manifest_path}: lists {name!r}, not a cache file name")
    if not _is_regular_file(path) or _sha256(path) != digest:
      raise CacheError(f"{path}: missing or corrupt (SHA-256 mismatch)")
  if not (isinstance(sizes, list) and sizes and
          all(isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in sizes)):
    raise CacheError(f"{manifest_path}: 'sizes' is not a list of positive level sizes")
  levels = len(sizes)
  try:
    mats = {attr: [scipy.sparse.load_npz(os.path.join(directory, f"{prefix}{i}.npz")).tocsr()
                   for i in range(levels if attr in ("adjacency", "laplacians") else levels - 1)]
            for prefix, attr in _MATRIX_FILES}
    vertices, faces = [], []
    for i in range(levels):
      with np.load(os.path.join(directory, f"mesh{i}.npz"), allow_pickle=False) as mesh:
        vertices.append(mesh["vertices"])
        faces.append(mesh["faces"])
    sampling = Sampling(vertices=vertices, faces=faces, **mats)
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
    raise CacheError(f"{directory}: unreadable cache file ({type(e).__name__}: {e})") from None
  if sampling.sizes != sizes:
    raise CacheError(f"{directory}: level sizes {sampling.sizes} differ from the manifest {sizes}")
  check_sampling(sampling, directory)
  return sampling


def check_sampling(sampling, where):
  """CacheError naming `where` unless every array is finite and consistent with the level
  sizes: [M_l, 3] vertices, faces in [0, M_l), square Laplacians, D [M_{l+1}, M_l] and
  U [M_l, M_{l+1}] (a cache whose hashes were rewritten to match is still checked)."""
  sizes = sampling.sizes
  for level, (v, f) in enumerate(zip(sampling.vertices, sampling.faces)):
    if v.ndim != 2 or v.shape[1] != 3 or not np.all(np.isfinite(v)):
      raise CacheError(f"{where}: level {level} vertices are not finite [M, 3]")
    if (f.ndim != 2 or f.shape[1] != 3 or not np.issubdtype(f.dtype, np.integer) or
        (f.size and (f.min() < 0 or f.max() >= sizes[level]))):
      raise CacheError(f"{where}: level {level} faces are not [F, 3] indices in "
                       f"[0, {sizes[level]})")
  expected = {"adjacency": [(m, m) for m in sizes], "laplacians": [(m, m) for m in sizes],
              "down": list(zip(sizes[1:], sizes[:-1])), "up": list(zip(sizes[:-1], sizes[1:]))}
  for attr, shapes in expected.items():
    matrices = getattr(sampling, attr)
    if len(matrices) != len(shapes):
      raise CacheError(f"{where}: {len(matrices)} {attr} matrices for {len(sizes)} levels")
    for level, (matrix, shape) in enumerate(zip(matrices, shapes)):
      if matrix.shape != shape or not np.all(np.isfinite(matrix.data)):
        raise CacheError(f"{where}: {attr}[{level}] is not a finite {shape[0]} x {shape[1]} "
                         "matrix")


def load_or_build(vertices, faces, factors=DEFAULT_FACTORS, directory=None, name="template",
                  coma_edge_weights=False, link_condition=True):
  """The sampling of a template, from `directory`'s cache when it is current.

  A missing, stale (other template/factors) or corrupt cache is rebuilt and
  rewritten; the log says which. Without `directory` nothing is cached.
  """
  if directory is None:
    return build(vertices, faces, factors, name, coma_edge_weights, link_condition)
  key = cache_key(vertices, faces, factors, coma_edge_weights, link_condition)
  if os.path.exists(directory):
    try:
      sampling = load(directory, key)
      logging.info("mesh sampling: loaded %s (levels %s)", directory, sampling.sizes)
      return sampling
    except CacheError as e:
      logging.warning("mesh sampling: rebuilding the cache: %s", e)
  else:
    logging.info("mesh sampling: no cache at %s; building it", directory)
  check_writable_cache(directory)  # before the build, not after it
  sampling = build(vertices, faces, factors, name, coma_edge_weights, link_condition)
  save(sampling, directory, key)
  return sampling
