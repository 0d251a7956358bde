"""Left-right vertex pairs of a face mesh, for the symmetry loss (SPEC 6.2, 10.4)."""

import numpy as np
import scipy.spatial


def mirror_pairs(vertices, tolerance=0.5):
  """Pairs (l, r) `[K, 2]` int32 of vertices mirrored across the x = 0 plane.

  The release read BFM09's face05_symlist.txt, whose indices address the full
  53,490-vertex model and must be remapped to the front mesh (SPEC 10.4); this
  finds the pairs geometrically on the mean shape instead, which works for any
  model in the BFM schema: vertex l (x < 0) pairs with the vertex nearest to
  its mirror image when that is closer than `tolerance` x the median
  nearest-neighbour distance. Vertices on the midline pair with nothing.

  Args:
    vertices: float `[N, 3]` mean shape, x across the face.
  """
  vertices = np.asarray(vertices, np.float64)
  tree = scipy.spatial.cKDTree(vertices)
  spacing = np.median(tree.query(vertices, k=2)[0][:, 1])
  left = np.flatnonzero(vertices[:, 0] < -0.5 * spacing)
  mirrored = vertices[left] * np.array([-1.0, 1.0, 1.0])
  distance, right = tree.query(mirrored)
  keep = distance < tolerance * spacing
  return np.stack([left[keep], right[keep]], axis=1).astype(np.int32)
