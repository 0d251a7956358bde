"""SavedModels for serving: the texture refinement (and the R-Net) in standard TensorFlow ops.

    export.export_texture_refinement(refinement, model, "out/export/texture_refinement")
    served = tf.saved_model.load("out/export/texture_refinement")   # TensorFlow only
    out = served.signatures["serving_default"](image=..., mask=..., coefficients=...)
    out["fine_albedo"], out["vertices"]                             # [B, N, 3] each

The texture refinement's SavedModel holds the face formation (bases as constants), the
refiner input, the identity encoder and the trained MeshGenerator, and stops at the fine
albedo: no rasterizer, no C++ op of this project, no XLA, so a process with TensorFlow and
nothing else (TensorFlow Serving included) loads and runs it.

Signatures (B any, N the morphable model's vertex count):
- `serving_default(image, mask, coefficients)`: image uint8 `[B, 224, 224, 3]` (RGB aligned
  crops), mask float32 `[B, 224, 224]` (skin mask in [0, 1]), coefficients float32
  `[B, 257]` (Deep3D's) -> fine_albedo float32 `[B, N, 3]` (RGB, 0-255: the GCN's T') and
  vertices float32 `[B, N, 3]` (the canonical shape, decimetres). The identity encoder's face
  chip is placed by the 5 points of the 68 keypoints the coefficients project to.
- `with_landmarks(image, mask, coefficients, landmarks)`: the same with the 5 alignment points
  float32 `[B, 5, 2]` (crop pixels (x, row)) that `scripts/reconstruct` and the datasets use;
  its fine_albedo is the pipeline's.
"""

import os
import shutil
import tempfile

import tensorflow as tf

from deep3dface import constants
from deep3dface import face_model as face_model_lib
from gcn_face import atomic_file, graph_ops, refinement as refinement_lib

SERVING_SIGNATURE = "serving_default"
LANDMARKS_SIGNATURE = "with_landmarks"
MANIFEST = "export.json"  # beside saved_model.pb: what exported it, from what
# What tf.saved_model.save writes; an older export is replaced only if it holds no more.
_SAVED_MODEL_ENTRIES = {"saved_model.pb", "fingerprint.pb", "variables", "assets",
                        "assets.extra", MANIFEST}

_SIZE = constants.IMAGE_SIZE
IMAGE_SPEC = tf.TensorSpec([None, _SIZE, _SIZE, 3], tf.uint8, "image")
MASK_SPEC = tf.TensorSpec([None, _SIZE, _SIZE], tf.float32, "mask")
COEFFICIENTS_SPEC = tf.TensorSpec([None, constants.COEFF_DIM], tf.float32, "coefficients")
LANDMARKS_SPEC = tf.TensorSpec([None, 5, 2], tf.float32, "landmarks")


class ExportError(ValueError):
  """An export that cannot be written; the message names the folder and the problem."""


def five_points(landmarks_up):
  """Deep3D's 5 alignment points `[B, 5, 2]` (crop pixels (x, row), rows down) of projected
  68 keypoints `[B, 68, 2]` (`FaceOutput.landmarks`: (u, v) with v up), as `align.five_from_68`
  makes them of detected landmarks."""
  points = tf.stack([landmarks_up[..., 0], (_SIZE - 1.0) - landmarks_up[..., 1]], axis=-1)
  return tf.stack([tf.reduce_mean(tf.gather(points, list(group), axis=1), axis=1)
                   for group in constants.DETECTED_LANDMARK_GROUPS_0BASED], axis=1)


class TextureRefinementServing(tf.Module):
  """The texture refinement's serving functions (see the module docstring).

  Args:
    refinement: gcn_face.refinement.TextureRefinement with trained weights.
    model: the deep3dface.bfm.MorphableModel it was trained on (formed again here with
      standard ops: `FaceModel(basis_kernel="matmul", xla=False)`).
  """

  def __init__(self, refinement, model):
    super().__init__(name="texture_refinement_serving")
    if model.num_vertices != refinement.face_model.num_vertices:
      raise ValueError(f"the morphable model has {model.num_vertices} vertices, the refinement "
                       f"{refinement.face_model.num_vertices}")
    self.refinement = refinement
    self.generator, self.encoder = refinement.generator, refinement.encoder
    self.face_model = face_model_lib.FaceModel(model, normals=refinement.face_model.normal_mode,
                                               basis_kernel="matmul", xla=False)
    self.serve = tf.function(self._serve, input_signature=[IMAGE_SPEC, MASK_SPEC,
                                                           COEFFICIENTS_SPEC])
    self.serve_with_landmarks = tf.function(
        self._serve_with_landmarks,
        input_signature=[IMAGE_SPEC, MASK_SPEC, COEFFICIENTS_SPEC, LANDMARKS_SPEC])

  def _serve(self, image, mask, coefficients):
    landmarks = five_points(self.face_model(coefficients).landmarks)
    return self._serve_with_landmarks(image, mask, coefficients, landmarks)

  def _serve_with_landmarks(self, image, mask, coefficients, landmarks):
    with graph_ops.standard_ops():  # traced here: the SavedModel must load without the project
      out = self.refinement.generate(
          {"image": tf.cast(image, tf.float32), "mask": tf.clip_by_value(mask, 0.0, 1.0),
           "coeff": coefficients, "landmarks": landmarks}, face_model=self.face_model)
    return {"fine_albedo": refinement_lib.to_255(out["fine_albedo"]),
            "vertices": out["face"].shape}

  def signatures(self):
    return {SERVING_SIGNATURE: self.serve, LANDMARKS_SIGNATURE: self.serve_with_landmarks}


def check_replaceable(path):
  """ExportError unless `path` is absent, an empty folder or an earlier export (only the
  files a SavedModel export writes)."""
  if not os.path.lexists(path):
    return
  if not os.path.isdir(path) or os.path.islink(path):
    raise ExportError(f"{path}: exists and is not a folder; not overwritten")
  entries = set(os.listdir(path))
  if entries and (MANIFEST not in entries or not entries <= _SAVED_MODEL_ENTRIES):
    raise ExportError(f"{path}: folder holds files that are not an earlier export "
                      f"({', '.join(sorted(entries - _SAVED_MODEL_ENTRIES)[:3]) or MANIFEST + ' missing'}); "
                      "not overwritten")


def save(module, path, signatures, manifest):
  """Writes a SavedModel of `module` into `path` atomically: a temporary folder beside it,
  renamed into place; an earlier export there is replaced (`check_replaceable`).
  `manifest` (a JSON object) goes to `path`/export.json."""
  path = os.path.abspath(path)
  check_replaceable(path)
  parent = os.path.dirname(path)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}-", dir=parent)
  old = None
  try:
    # Serving needs no gradients; the sparse operators' custom gradients capture constants
    # that SavedModel cannot store.
    # Functions traced while saving (the tracked Keras layers' too) use standard ops only.
    with graph_ops.standard_ops():
      tf.saved_model.save(module, tmp, signatures=signatures,
                          options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
    atomic_file.write_json(os.path.join(tmp, MANIFEST), manifest)
    check_replaceable(path)  # again: the folder may have changed while exporting
    if os.path.isdir(path):
      old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}-old-", dir=parent)
      os.rename(path, os.path.join(old, "export"))
    os.rename(tmp, path)
  finally:
    for written in (tmp, old):
      if written is not None and os.path.isdir(written):
        shutil.rmtree(written)  # folders this function made (the old one checked above)


def export_texture_refinement(refinement, model, path, source=None):
  """Writes the texture refinement's SavedModel to `path` (see the module docstring).

  Args:
    refinement: gcn_face.refinement.TextureRefinement with trained weights.
    model: its deep3dface.bfm.MorphableModel.
    path: the SavedModel folder (absent, empty or an earlier export).
    source: what it was exported from (e.g. the checkpoint), for export.json.

  Returns:
    the TextureRefinementServing that was saved (callable in-process).
  """
  serving = TextureRefinementServing(refinement, model)
  save(serving, path, serving.signatures(),
       {"kind": "texture_refinement", "source": source, "vertices": model.num_vertices,
        "signatures": {
            SERVING_SIGNATURE: {
                "inputs": {"image": "uint8 [B, 224, 224, 3] RGB aligned crop",
                           "mask": "float32 [B, 224, 224] skin mask in [0, 1]",
                           "coefficients": "float32 [B, 257] Deep3D coefficients"},
                "outputs": {"fine_albedo": "float32 [B, N, 3] RGB 0-255",
                            "vertices": "float32 [B, N, 3] canonical shape, decimetres"}},
            LANDMARKS_SIGNATURE: {
                "inputs": {"...": f"as {SERVING_SIGNATURE}",
                           "landmarks": "float32 [B, 5, 2] alignment points, crop pixels"},
                "outputs": f"as {SERVING_SIGNATURE}"}}})
  return serving


def export_rnet(model, path, source=None):
  """Writes the R-Net's SavedModel (`deep3dface.rnet.export_saved_model`'s signature:
  input_imgs float32 BGR `[B, 224, 224, 3]` 0-255 -> coeff `[B, 257]`, pool5 `[B, 2048]`)
  to `path` atomically."""
  from deep3dface import rnet  # pylint: disable=g-import-not-at-top
  module = rnet.serving_module(model)
  save(module, path, {SERVING_SIGNATURE: module.serve},
       {"kind": "rnet", "source": source, "signatures": {SERVING_SIGNATURE: {
           "inputs": {"input_imgs": "float32 [B, 224, 224, 3] BGR 0-255 aligned crop"},
           "outputs": {"coeff": "float32 [B, 257]", "pool5": "float32 [B, 2048]"}}}})
