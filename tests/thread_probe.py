"""Renders a fixed scene with N intra-op threads and saves outputs + gradients (test helper)."""

import sys

import numpy as np
import tensorflow as tf

threads, path = int(sys.argv[1]), sys.argv[2]
tf.config.threading.set_intra_op_parallelism_threads(threads)
import renderer  # pylint: disable=g-import-not-at-top
from renderer import scenes  # pylint: disable=g-import-not-at-top

vertices, triangles = scenes.grid_mesh(40, 40, 0.9, 0.9)
rng = np.random.default_rng(0)
vertices[:, 2] = 0.2 * np.sin(3 * vertices[:, 0]) * np.cos(2 * vertices[:, 1])
batch = np.stack([vertices + rng.normal(scale=0.01, size=vertices.shape) for _ in range(3)])
batch = tf.constant(batch.astype(np.float32))
colors = tf.constant(rng.uniform(size=(3, len(vertices), 3)).astype(np.float32))
with tf.GradientTape() as tape:
  tape.watch([batch, colors])
  view = renderer.camera_utils.look_at(np.tile([[0.3, 0.2, 3.0]], (3, 1)), np.zeros((3, 3)),
                                       np.tile([[0.0, 1, 0]], (3, 1)))
  proj = renderer.camera_utils.perspective(1.0, [40.0] * 3, [0.1] * 3, [10.0] * 3)
  clip = renderer.camera_utils.transform_homogeneous(tf.matmul(proj, view), batch)
  raster = renderer.rasterize(clip, triangles, 96, 80)
  image = renderer.interpolate(colors, triangles, raster.triangle_ids, raster.barycentrics)
  loss = tf.reduce_sum(image * tf.random.stateless_uniform(image.shape, [5, 6]))
grads = tape.gradient(loss, [batch, colors])

# mesh_renderer with two lights, specular and per-vertex shininess (Phong op).
lights = tf.constant(rng.uniform(-2, 2, size=(3, 2, 3)).astype(np.float32) + [0, 0, 3])
eye = tf.constant([[0.3, 0.2, 3.0]] * 3)
normals_in = tf.math.l2_normalize(batch + [0.0, 0.0, 1.0], axis=-1)
with tf.GradientTape() as tape:
  tape.watch([batch, colors, lights, eye])
  shaded = renderer.mesh_renderer(batch, triangles, normals_in, colors, eye, [0.0, 0.0, 0.0],
                                  [0.0, 1.0, 0.0], lights, tf.ones([3, 2, 3]), 96, 80,
                                  specular_colors=colors[..., ::-1],
                                  shininess_coefficients=3.0 + colors[..., 0],
                                  ambient_color=[0.1, 0.2, 0.3], fov_y=40.0, near_clip=0.1)
  shaded_loss = tf.reduce_sum(shaded * tf.random.stateless_uniform(shaded.shape, [7, 8]))
shaded_grads = tape.gradient(shaded_loss, [batch, colors, lights, eye])

# The face model's C++ ops (deep3dface.face_ops): bases, normals, pose and light.
from deep3dface import bfm, face_ops, posing  # pylint: disable=g-import-not-at-top

basis = tf.constant(rng.normal(size=(1003, 24)).astype(np.float32))
mean = tf.constant(rng.normal(size=1003).astype(np.float32))
coeff = tf.constant(rng.normal(size=(3, 24)).astype(np.float32))
shape = batch[..., :3]
point_buf = bfm.point_buffer(triangles, vertices.shape[0])
with tf.GradientTape() as tape:
  tape.watch([coeff, shape])
  combined = face_ops.linear_basis(mean, basis, coeff)
  normals = face_ops.vertex_normals(shape, triangles, point_buf)
  posed = face_ops.pose_light(shape, normals, shape * 100.0, coeff[:, :3], coeff[:, 3:6],
                              tf.tile(coeff, [1, 2])[:, :27], posing.camera_matrix(),
                              np.arange(0, len(vertices), 97, dtype=np.int32))
  face_loss = (tf.reduce_sum(combined * combined) + tf.reduce_sum(normals * shape) +
               sum(tf.reduce_sum(tf.sin(x)) for x in posed))
face_grads = tape.gradient(face_loss, [coeff, shape])

# The graph ops (gcn_face.graph_ops): a ChebConv of each form and the sparse product, on the
# grid's Laplacian (1600 vertices: several row blocks).
import scipy.sparse  # pylint: disable=g-import-not-at-top
from gcn_face import graph  # pylint: disable=g-import-not-at-top

edges = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
adjacency = scipy.sparse.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])),
                                    shape=(len(vertices),) * 2).tocsr()
adjacency = ((adjacency + adjacency.T) > 0).astype(np.float64)
degree = np.asarray(adjacency.sum(1)).ravel()
laplacian = graph.SparseOperator(-scipy.sparse.diags(degree ** -0.5) @ adjacency @
                                 scipy.sparse.diags(degree ** -0.5), "probe")
graph_x = tf.constant(rng.normal(size=(len(vertices), 3, 12)).astype(np.float32))
graph_out = {}
for fout in (20, 5):  # the recursion form and Clenshaw's
  kernel = tf.constant(rng.normal(size=(12 * 6, fout)).astype(np.float32))
  with tf.GradientTape() as tape:
    tape.watch([graph_x, kernel])
    conv = laplacian.chebyshev_conv(graph_x, kernel, 6)
    conv_loss = tf.reduce_sum(tf.sin(conv)) + tf.reduce_sum(laplacian(graph_x) ** 2)
  graph_out[f"cheb{fout}"] = conv.numpy()
  for name, g in zip(("dx", "dkernel"), tape.gradient(conv_loss, [graph_x, kernel])):
    graph_out[f"cheb{fout}_{name}"] = g.numpy()
np.savez(path, **graph_out, ids=raster.triangle_ids.numpy(), bary=raster.barycentrics.numpy(),
         depth=raster.depth.numpy(), image=image.numpy(), dv=grads[0].numpy(),
         dc=grads[1].numpy(), shaded=shaded.numpy(),
         **{f"shaded_d{i}": g.numpy() for i, g in enumerate(shaded_grads)}, combined=combined.numpy(), normals=normals.numpy(),
         d_coeff=face_grads[0].numpy(), d_shape=face_grads[1].numpy(),
         **{f"posed_{k}": v.numpy() for k, v in posed._asdict().items()})
