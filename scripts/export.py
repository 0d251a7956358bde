"""Exports SavedModels for serving: the GCN texture refinement, and the R-Net when present.

  python -m scripts.export --gcn_checkpoint=checkpoints/bfm09_face_normal --output_dir=out/export

Writes, each atomically (an earlier export in the same place is replaced, nothing else is):
  <output_dir>/texture_refinement/  serving_default(image uint8 [B, 224, 224, 3], mask float32
      [B, 224, 224], coefficients float32 [B, 257]) -> fine_albedo float32 [B, N, 3] (0-255),
      vertices float32 [B, N, 3] (canonical shape, dm); with_landmarks(..., landmarks
      float32 [B, 5, 2]) as scripts/reconstruct computes it (docs/reconstruction.md).
  <output_dir>/rnet/  serving_default(input_imgs float32 BGR [B, 224, 224, 3]) -> coeff, pool5
      (with --rnet_path, or checkpoints/FaceReconModel.pb when present).
Both hold standard TensorFlow ops only: a process with TensorFlow and nothing of this
project (TensorFlow Serving included) loads them. --verify reloads each export and compares
its outputs with the in-process model's.
"""

import os

from absl import app, flags, logging
import numpy as np

from scripts import assets
from scripts.common import (error_line, fail, load_refinement, parse_flags, quiet_tensorflow,
                            user_path)

FLAGS = flags.FLAGS
flags.DEFINE_string("gcn_checkpoint", None,
                    "scripts/train.py checkpoint folder (default: checkpoints/bfm09_face_normal "
                    "if present).")
flags.DEFINE_string("output_dir", "out/export", "Folder of the SavedModels.")
flags.DEFINE_string("rnet_path", None,
                    "Deep3D's FaceReconModel.pb to export too (default: "
                    "checkpoints/FaceReconModel.pb if present; empty: none).")
flags.DEFINE_bool("verify", True,
                  "Reload each SavedModel and check its outputs against the in-process model's.")
flags.DEFINE_integer("verify_batch", 2, "Faces in the verification batch.", lower_bound=1)

TOLERANCE = 1e-5  # reloaded vs in-process outputs, relative to their largest magnitude


def _verification_inputs(count, seed=0):
  """Random crops, masks and mild coefficients (the R-Net's range) for --verify."""
  rng = np.random.default_rng(seed)
  image = rng.integers(0, 256, (count, 224, 224, 3), dtype=np.uint8)
  mask = (rng.uniform(size=(count, 224, 224)) > 0.3).astype(np.float32)
  coefficients = (rng.normal(size=(count, 257)) * 0.3).astype(np.float32)
  coefficients[:, 254:] = 0.0  # translation: the face in front of the camera
  return image, mask, coefficients


def _max_relative_difference(expected, actual):
  difference = max(float(np.max(np.abs(np.asarray(expected[k]) - np.asarray(actual[k]))))
                   for k in expected)
  scale = max(float(np.max(np.abs(np.asarray(v)))) for v in expected.values())
  return difference / max(scale, 1e-12)


def _verify(path, expected, **inputs):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  loaded = tf.saved_model.load(path).signatures["serving_default"]
  actual = {k: v.numpy() for k, v in loaded(**{k: tf.constant(v) for k, v in inputs.items()})
            .items()}
  error = _max_relative_difference(expected, actual)
  if not error <= TOLERANCE:
    fail(f"{path}: the reloaded SavedModel differs from the in-process model (max relative "
         f"difference {error:.3g} > {TOLERANCE:g})")
  logging.info("%s: reloaded, outputs equal the in-process model's (max relative difference "
               "%.2g)", path, error)


def _export_gcn(checkpoint, output_dir, rnet_model):
  from gcn_face import export  # pylint: disable=g-import-not-at-top
  path = os.path.join(output_dir, "texture_refinement")
  export.check_replaceable(path)  # before minutes of loading
  module, model, config = load_refinement(checkpoint, rnet_model)
  serving = export.export_texture_refinement(module, model, path, source=os.path.abspath(
      checkpoint))
  logging.info("texture refinement (%s, %d vertices) -> %s", config["face_model"],
               model.num_vertices, path)
  if FLAGS.verify:
    image, mask, coefficients = _verification_inputs(FLAGS.verify_batch)
    expected = {k: v.numpy() for k, v in serving.serve(image, mask, coefficients).items()}
    _verify(path, expected, image=image, mask=mask, coefficients=coefficients)
  return path


def _export_rnet(rnet_path, rnet_model, output_dir):
  from gcn_face import export  # pylint: disable=g-import-not-at-top
  path = os.path.join(output_dir, "rnet")
  export.export_rnet(rnet_model, path, source=os.path.abspath(rnet_path))
  logging.info("R-Net -> %s", path)
  if FLAGS.verify:
    images = np.random.default_rng(1).uniform(0, 255, (FLAGS.verify_batch, 224, 224, 3))
    images = images.astype(np.float32)
    coeff, pool5 = rnet_model(images, training=False)
    _verify(path, {"coeff": coeff.numpy(), "pool5": pool5.numpy()}, input_imgs=images)
  return path


def main(argv):
  del argv
  try:
    gcn = assets.flag_path("gcn_checkpoint", FLAGS.gcn_checkpoint, "gcn")
    rnet_path = assets.flag_path("rnet_path", FLAGS.rnet_path, "rnet")
  except ValueError as e:
    fail(str(e))
  if gcn is None:
    fail(f"--gcn_checkpoint: no checkpoint given and none at {assets.ASSETS['gcn'].path} "
         "(python -m scripts.train makes one)")
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from deep3dface import rnet  # pylint: disable=g-import-not-at-top
  from gcn_face import export  # pylint: disable=g-import-not-at-top
  output_dir = user_path(FLAGS.output_dir)
  written = []
  try:
    rnet_model = rnet.from_frozen_graph(user_path(rnet_path)) if rnet_path else None
    written.append(_export_gcn(user_path(gcn), output_dir, rnet_model))
    if rnet_model is not None:
      written.append(_export_rnet(user_path(rnet_path), rnet_model, output_dir))
    else:
      logging.info("no R-Net exported: %s", assets.describe(["rnet"]))
  except (ValueError, OSError, tf.errors.OpError, export.ExportError) as e:
    fail(error_line(e))
  for path in written:
    print(f"Wrote {path}")


if __name__ == "__main__":
  quiet_tensorflow()
  app.run(main, flags_parser=parse_flags)
