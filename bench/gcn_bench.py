"""Benchmark of gcn_face (issue: GCN targets).

- Mesh sampling of the real BFM front topology (35,709 vertices, synthetic
  face-like positions): build time and peak memory, in a child process.
- GCN Decoder + GCN Refiner + Combine Net (the release's "normal" model) at
  batch 4: forward and forward + backward (gradients to every weight), with
  the process's peak memory.
- One sparse Laplacian product on the 35,709-vertex level, for the layout
  choice: the CSR kernel used by gcn_face.graph vs tf.sparse.sparse_dense_matmul.

  python -m bench.gcn_bench --output=bench/results/gcn.json
"""

import multiprocessing
import os
import resource
import shutil
import tempfile
import time

from absl import app, flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_string("facemodel_info", "../shared/data/deep3d/BFM/facemodel_info.mat",
                    "Deep3D's facemodel_info.mat (real BFM front topology).")
flags.DEFINE_integer("batch_size", 4, "Batch size.")
flags.DEFINE_integer("repeats", 10, "Timed repetitions per measurement.")
flags.DEFINE_integer("threads", 0, "Intra-op threads (0 = TensorFlow default).")
flags.DEFINE_string("output", None, "Optional JSON output path (also printed).")


def _build_child(info, directory, queue):
  """Builds (timed) and caches the sampling in a fresh process, so its peak memory is its own."""
  from deep3dface import synthetic
  from gcn_face import mesh_sampling
  model = synthetic.synthetic_model("bfm", info)
  start = time.perf_counter()
  sampling = mesh_sampling.build(model.mean_shape, model.triangles)
  seconds = time.perf_counter() - start
  mesh_sampling.save(sampling, directory, key="gcn_bench")
  queue.put({"seconds": round(seconds, 2), "sizes": sampling.sizes,
             "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)})


def main(argv):
  del argv
  info = FLAGS.facemodel_info
  if not os.path.isfile(info):
    raise SystemExit(f"error: {info} not found (set --facemodel_info)")
  cache = os.path.join(tempfile.mkdtemp(prefix="gcn_bench-"), "sampling")
  context = multiprocessing.get_context("spawn")
  queue = context.Queue()
  child = context.Process(target=_build_child, args=(info, cache, queue))
  child.start()
  sampling_result = queue.get()
  child.join()
  logging.info("sampling: %s", sampling_result)

  import numpy as np
  import scipy.sparse
  import tensorflow as tf
  tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
  from bench.timing import measure, report_json
  from gcn_face import graph, mesh_sampling, networks

  sampling = mesh_sampling.load(cache, key="gcn_bench")
  shutil.rmtree(os.path.dirname(cache))
  g = graph.MeshGraph(sampling)
  gen = networks.MeshGenerator(g)
  rng = np.random.default_rng(0)
  b = FLAGS.batch_size
  emb = tf.constant(rng.normal(size=(b, networks.EMBEDDING_DIM)).astype(np.float32))
  per_vertex = tf.constant(rng.uniform(-1, 1, (b, sampling.sizes[0], 7)).astype(np.float32))

  forward = tf.function(lambda e, p: gen((e, p)))

  @tf.function
  def forward_backward(e, p):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(gen((e, p)) ** 2)
    return tape.gradient(loss, gen.trainable_variables)

  results = {
      "generator_forward": measure(lambda: forward(emb, per_vertex).numpy(), FLAGS.repeats),
      "generator_forward_backward": measure(
          lambda: [t.numpy() for t in forward_backward(emb, per_vertex)], FLAGS.repeats),
  }
  results["peak_rss_mb_after_generator"] = round(
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

  lap = scipy.sparse.csr_matrix(sampling.laplacians[0]) - scipy.sparse.identity(
      sampling.sizes[0], dtype=np.float32, format="csr")
  x = tf.constant(rng.normal(size=(sampling.sizes[0], b * 16)).astype(np.float32))
  op = graph.SparseOperator(lap)
  coo = lap.tocoo()
  st = tf.sparse.reorder(tf.SparseTensor(np.stack([coo.row, coo.col], 1).astype(np.int64),
                                         coo.data.astype(np.float32), coo.shape))
  csr = tf.function(lambda v: op(v))
  sdm = tf.function(lambda v: tf.sparse.sparse_dense_matmul(st, v))
  results["laplacian0_product_64_columns_csr"] = measure(lambda: csr(x).numpy(), FLAGS.repeats)
  results["laplacian0_product_64_columns_sparse_dense_matmul"] = measure(
      lambda: sdm(x).numpy(), FLAGS.repeats)
  params = sum(int(np.prod(v.shape)) for v in gen.trainable_variables)
  report = {"benchmark": "gcn_face", "batch_size": b, "intra_op_threads": FLAGS.threads,
            "sizes": sampling.sizes, "parameters": params,
            "sampling_build": sampling_result, "results": results,
            "targets": {"generator_forward_s": 0.30, "generator_forward_backward_s": 0.60,
                        "sampling_build_s": 120, "sampling_peak_mb": 4096}}
  report_json(report, FLAGS.output)


if __name__ == "__main__":
  app.run(main)
