"""Benchmark of the coarse stage (issue: deep3dface targets).

Face formation + SH lighting + landmark projection + clip space, batch 4, on a
synthetic model with the real 35,709-vertex BFM09 front topology (a fine grid
of similar size when ../shared is absent), as a tf.function and under XLA;
5-point alignment per image (excluding detection) and dlib detection + 68
landmarks per image on the 25 real photos; R-Net forward (random weights) at
batch 1, as a tf.function and under XLA.

  python -m bench.deep3d_bench --output=bench/results/deep3d.json
"""

import glob
import os
import statistics

from absl import app, flags, logging

FLAGS = flags.FLAGS
_SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                       "deep3d")
flags.DEFINE_integer("batch_size", 4, "Coefficient vectors per batch.")
flags.DEFINE_integer("repeats", 20, "Timed repetitions per measurement.")
flags.DEFINE_integer("threads", 0, "Intra-op threads (0 = TensorFlow default).")
flags.DEFINE_string("topology", os.path.join(_SHARED, "BFM", "facemodel_info.mat"),
                    "Deep3D's facemodel_info.mat (real topology).")
flags.DEFINE_string("photos", os.path.join(_SHARED, "input"),
                    "Folder of photos with 5-point .txt landmarks.")
flags.DEFINE_string("output", None, "Optional JSON output path (also printed).")


def _per_image_summary(per_image):
  """Median and worst of per-image median wall times."""
  medians = [r["wall_ms_median"] for r in per_image]
  return {"wall_ms_median": float(statistics.median(medians)),
          "wall_ms_max_of_medians": float(max(medians)), "images": len(per_image)}


def main(argv):
  del argv
  import numpy as np
  import tensorflow as tf
  tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
  from bench.timing import measure, report_json
  from deep3dface import align, face_model, rnet, synthetic

  if os.path.isfile(FLAGS.topology):
    model = synthetic.synthetic_model("bfm", FLAGS.topology)
    scene = "synthetic model, real BFM09 front topology"
  else:
    model = synthetic.synthetic_model("grid", grid_step=0.0095)
    scene = "synthetic model, fine grid"
  logging.info("%s: %d vertices", scene, model.num_vertices)
  face = face_model.FaceModel(model, basis_kernel="op")
  rng = np.random.default_rng(0)
  coeff = tf.constant(rng.normal(size=(FLAGS.batch_size, 257)).astype(np.float32) * 0.3)
  # Eager execution on CPU is synchronous: a call returns with its outputs
  # computed. Copying them into numpy (11 MB at B = 4) is timed separately.
  to_numpy = lambda r: tf.nest.map_structure(lambda t: t.numpy(), r)
  graph = tf.function(face.__call__)
  # The GPU kernel: tf.matmul and gathers with everything in one XLA function.
  matmul = tf.function(face_model.FaceModel(model, basis_kernel="matmul").__call__)
  results = {
      "face_formation_forward_op": measure(lambda: graph(coeff), FLAGS.repeats),
      "face_formation_forward_op_to_numpy": measure(lambda: to_numpy(graph(coeff)),
                                                    FLAGS.repeats),
      "face_formation_forward_matmul_xla": measure(lambda: matmul(coeff), FLAGS.repeats),
  }
  photos = sorted(glob.glob(os.path.join(FLAGS.photos, "*.jpg")) +
                  glob.glob(os.path.join(FLAGS.photos, "*.png")))
  if photos:
    items = [(align.load_image(p), align.load_landmarks_txt(os.path.splitext(p)[0] + ".txt"))
             for p in photos]
    results["alignment_per_image"] = _per_image_summary(
        [measure(lambda: align.align_image(im, pts), 5) for im, pts in items])
    try:
      from deep3dface import landmarks
      detector = landmarks.LandmarkDetector()
      results["dlib_landmarks_per_image"] = _per_image_summary(
          [measure(lambda: detector.detect(im), 3, warmup=1) for im, _ in items])
    except ImportError as e:
      logging.warning("skipping dlib landmarks: %s", e)
  net = rnet.build_rnet()
  image = tf.constant(rng.uniform(0, 255, (1, 224, 224, 3)).astype(np.float32))
  infer = lambda images: net(images, training=False)
  rnet_graph = tf.function(infer)
  rnet_xla = tf.function(infer, jit_compile=True)
  results["rnet_forward_batch1"] = measure(lambda: rnet_graph(image), FLAGS.repeats)
  results["rnet_forward_batch1_xla"] = measure(lambda: rnet_xla(image), FLAGS.repeats)
  report = {"benchmark": "deep3d", "scene": scene, "vertices": model.num_vertices,
            "batch_size": FLAGS.batch_size, "intra_op_threads": FLAGS.threads, "results": results}
  report_json(report, FLAGS.output)


if __name__ == "__main__":
  app.run(main)
