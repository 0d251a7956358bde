"""Benchmark of the identity networks (issue: identity targets).

dlib's face-recognition ResNet ported to TensorFlow: forward and forward +
backward (gradient to the chips) at batch 4 on 150 x 150 chips, as a
tf.function and under XLA, against dlib's own C++ descriptor on the same chips
in the same run (per face). Also the differentiable face chips from 224 x 224
crops, the dlib encoder end to end (crop -> chip -> descriptor, forward and
forward + backward to the crops, as the identity loss uses it) and FaceNet
(Inception-ResNet-v1, random weights) forward at batch 4.

  python -m bench.identity_bench --output=bench/results/identity.json
"""


from absl import app, flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch_size", 4, "Chips per batch.")
flags.DEFINE_integer("repeats", 10, "Timed repetitions per measurement.")
flags.DEFINE_integer("threads", 0, "Intra-op threads (0 = TensorFlow default).")
flags.DEFINE_string("output", None, "Optional JSON output path (also printed).")


def main(argv):
  del argv
  import numpy as np
  import tensorflow as tf
  tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
  import dlib
  from bench.timing import measure, report_json
  from deep3dface import align
  from gcn_face.identity import dlib_resnet, encoder, face_chip, facenet

  path = dlib_resnet.default_model_path()
  port = dlib_resnet.load(path)
  rng = np.random.default_rng(0)
  size = dlib_resnet.CHIP_SIZE
  chips_u8 = rng.integers(0, 256, (FLAGS.batch_size, size, size, 3), dtype=np.uint8)
  chips = tf.constant(chips_u8, tf.float32)

  def forward_backward(x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      loss = tf.reduce_sum(port(x) ** 2)
    return tape.gradient(loss, x)

  forward = tf.function(lambda x: port(x))
  forward_xla = tf.function(lambda x: port(x), jit_compile=True)
  backward = tf.function(forward_backward)
  results = {
      "port_forward": measure(lambda: forward(chips).numpy(), FLAGS.repeats),
      "port_forward_xla": measure(lambda: forward_xla(chips).numpy(), FLAGS.repeats),
      "port_forward_backward": measure(lambda: backward(chips).numpy(), FLAGS.repeats),
  }
  crops = tf.constant(rng.uniform(0, 255, (FLAGS.batch_size, 224, 224, 3)), tf.float32)
  points = tf.constant(np.tile(align.standard_crop_points(), (FLAGS.batch_size, 1, 1)), tf.float64)
  chips_fn = tf.function(lambda x: face_chip.extract_face_chips(x, points, layout="deep3d5"))
  dlib_encoder = encoder.DlibEncoder(port)

  def encoder_backward(x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      loss = tf.reduce_sum(dlib_encoder.embed(x, points) ** 2)
    return tape.gradient(loss, x)

  embed = tf.function(lambda x: dlib_encoder.embed(x, points))
  embed_backward = tf.function(encoder_backward)
  facenet_model = facenet.build_facenet()
  facenet_forward = tf.function(lambda x: facenet_model(facenet.preprocess(x), training=False))
  results["face_chips_from_224"] = measure(lambda: chips_fn(crops).numpy(), FLAGS.repeats)
  results["dlib_encoder_forward"] = measure(lambda: embed(crops).numpy(), FLAGS.repeats)
  results["dlib_encoder_forward_backward"] = measure(lambda: embed_backward(crops).numpy(),
                                                      FLAGS.repeats)
  results["facenet_forward"] = measure(lambda: facenet_forward(crops)[0].numpy(), FLAGS.repeats)
  recognizer = dlib.face_recognition_model_v1(path)
  results["dlib_forward"] = measure(
      lambda: [recognizer.compute_face_descriptor(c) for c in chips_u8], FLAGS.repeats)
  per_face = {name: round(r["wall_ms_median"] / FLAGS.batch_size, 3)
              for name, r in results.items()}
  logging.info("per face (ms): %s", per_face)
  report = {"benchmark": "identity", "batch_size": FLAGS.batch_size,
            "intra_op_threads": FLAGS.threads, "results": results, "wall_ms_median_per_face": per_face}
  report_json(report, FLAGS.output)


if __name__ == "__main__":
  app.run(main)
