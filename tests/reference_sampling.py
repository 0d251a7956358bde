"""Slow, literal reference of CoMA's mesh sampling (SPEC 4), for small meshes only.

Written from the specification step by step (a full scan of every face and
every queued edge per collapse, numpy matrix products for the costs, the
vertex count recomputed with numpy.unique), sharing no code with
gcn_face.mesh_sampling, whose bookkeeping makes each collapse O(valence).
"""

import heapq
import math

import numpy as np


def quadrics(v, f):
  q = np.zeros((len(v), 4, 4))
  for face in f:
    m = np.hstack([v[face], np.ones((3, 1))])
    plane = np.linalg.svd(m)[2][-1]
    plane = plane / np.sqrt(plane[0] * plane[0] + plane[1] * plane[1] + plane[2] * plane[2])
    for k in range(3):
      q[face[k]] += np.outer(plane, plane)
  return q


def decimate(v, f, factor):
  """Returns (kept vertex ids ascending, faces re-indexed), CoMA's qslim transformer."""
  v = np.asarray(v, np.float64)
  target = math.ceil(len(v) * (1.0 / factor))
  q = quadrics(v, f)

  def form(qs, p):
    # p^T Q p summed row by row, left to right: costs that tie up to rounding must
    # round the same way as in the implementation under test
    total = 0.0
    for i in range(4):
      row = 0.0
      for j in range(4):
        row = row + qs[i, j] * p[j] if j else qs[i, j] * p[j]
      total = total + p[i] * row if i else p[i] * row
    return total

  def cost(r, c):
    qs = q[r] + q[c]
    return form(qs, np.append(v[r], 1.0)), form(qs, np.append(v[c], 1.0)), qs

  pairs = set()
  for face in f:
    for a, b in ((face[0], face[1]), (face[1], face[2]), (face[2], face[0])):
      pairs.add((min(a, b), max(a, b)))
  queue = []
  for r, c in sorted(pairs, key=lambda e: (e[1], e[0])):
    dc, dr, _ = cost(r, c)
    heapq.heappush(queue, (min(dc, dr), (r, c)))
  faces = np.array(f, np.int64)
  count = len(v)
  while count > target:
    queued, (r, c) = heapq.heappop(queue)
    if r == c:
      continue
    dc, dr, qs = cost(r, c)
    if min(dc, dr) > queued:
      heapq.heappush(queue, (min(dc, dr), (r, c)))
      continue
    keep, gone = (r, c) if dc < dr else (c, r)
    faces[faces == gone] = keep
    for i, (qc, (a, b)) in enumerate(queue):
      queue[i] = (qc, (keep if a == gone else a, keep if b == gone else b))
    q[r] = qs
    q[c] = qs
    degenerate = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 2] == faces[:, 0])
    faces = faces[~degenerate]
    count = len(np.unique(faces))
  kept = np.unique(faces)
  return kept, np.searchsorted(kept, faces)
