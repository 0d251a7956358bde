"""One identity-encoder interface over dlib's ResNet (port) and FaceNet.

    encoder = encoder.load_encoder("auto")          # FaceNet if its weights exist, else dlib
    features = encoder.embed(images, landmarks)     # [B, D]

`embed` takes aligned face crops (Deep3D's 224 x 224 by default; any square
size), float RGB in [0, 255], and is differentiable with respect to the images,
so training uses it for the identity loss (cosine between features of the photo
and of the render) and for the decoder's embedding input; evaluation uses the
other one as an independent recogniser.

- `DlibEncoder` (128-d, works out of the box): dlib's face chip from landmarks
  in the crop (`face_chip`), then the ported ResNet. Landmarks `[B, 5, 2]`
  (Deep3D's 5 points) or `[B, 68, 2]` (dlib's 68); without them, the points
  where alignment puts a frontal face (`align.standard_crop_points`).
- `FaceNetEncoder` (1792-d pooled feature of Inception-ResNet-v1, as the GCN
  release): the whole crop resized to 160 (SPEC 3.2); landmarks are ignored.
"""

import os

from absl import logging
import numpy as np
import tensorflow as tf

from deep3dface import align
from gcn_face.identity import dlib_resnet, face_chip, facenet

KINDS = ("auto", "dlib", "facenet")
MIN_IMAGE_SIZE = 32  # pixels; below this no recogniser sees a face
RANGE_TOLERANCE = 1e-2  # float rounding of renders composited on the 0-255 scale


class EncoderUnavailable(FileNotFoundError):
  """The requested encoder's weights are missing; the message says where they belong."""


def check_images(images):
  """float32 `[B, S, S, 3]` with values in [0, 255]; ValueError / InvalidArgumentError else."""
  images = tf.cast(tf.convert_to_tensor(images), tf.float32)
  shape = images.shape
  if shape.rank != 4 or shape[-1] != 3:
    raise ValueError(f"images must be [B, H, W, 3] RGB, got shape {shape}")
  if shape[1] is not None and shape[2] is not None:
    if shape[1] != shape[2] or shape[1] < MIN_IMAGE_SIZE:
      raise ValueError(f"images must be square aligned crops of at least {MIN_IMAGE_SIZE} px, "
                       f"got {shape[2]}x{shape[1]}")
  low, high = tf.reduce_min(images), tf.reduce_max(images)
  if tf.executing_eagerly():
    if not (np.isfinite(float(low)) and np.isfinite(float(high))):
      raise ValueError("images contain NaN or infinite values")
    if float(low) < -RANGE_TOLERANCE or float(high) > 255.0 + RANGE_TOLERANCE:
      raise ValueError(f"images must be RGB in [0, 255], got values in [{float(low):.3g}, "
                       f"{float(high):.3g}]")
    return images
  with tf.control_dependencies([
      tf.debugging.assert_greater_equal(low, -RANGE_TOLERANCE, "images must be RGB in [0, 255]"),
      tf.debugging.assert_less_equal(high, 255.0 + RANGE_TOLERANCE,
                                     "images must be RGB in [0, 255]")]):
    return tf.identity(images)


class IdentityEncoder(tf.Module):
  """Base: `embed(images, landmarks=None) -> [B, feature_dim]` float32."""

  kind = None
  feature_dim = None
  uses_landmarks = False

  def embed(self, images, landmarks=None):
    raise NotImplementedError


class DlibEncoder(IdentityEncoder):
  """dlib's face-recognition ResNet (TensorFlow port) on dlib-style face chips.

  Args:
    model: a `dlib_resnet` Keras model (default: loaded from face_recognition_models).
    five_point_layout: what 5 landmarks mean: "deep3d5" (eye centres, nose tip,
      mouth corners; this project's data) or "dlib5" (dlib's 5-point predictor).
  """

  kind = "dlib"
  feature_dim = dlib_resnet.DESCRIPTOR_DIM
  uses_landmarks = True

  def __init__(self, model=None, five_point_layout="deep3d5"):
    super().__init__(name="dlib_encoder")
    if five_point_layout not in ("deep3d5", "dlib5"):
      raise ValueError(f"five_point_layout must be 'deep3d5' or 'dlib5', got {five_point_layout!r}")
    self.model = model if model is not None else dlib_resnet.load()
    self.five_point_layout = five_point_layout

  def chips(self, images, landmarks=None):
    """The 150 x 150 chips the network sees, `[B, 150, 150, 3]`."""
    images = check_images(images)
    if landmarks is None:
      size = images.shape[1] if images.shape[1] is not None else tf.shape(images)[1]
      points = tf.constant(align.standard_crop_points(size), tf.float64)
      landmarks = tf.broadcast_to(points, tf.stack([tf.shape(images)[0], 5, 2]))
      layout = "deep3d5"
    else:
      landmarks = tf.cast(tf.convert_to_tensor(landmarks), tf.float64)
      if landmarks.shape.rank != 3 or landmarks.shape[1] not in (5, 68) or landmarks.shape[2] != 2:
        raise ValueError(f"landmarks must be [B, 5, 2] or [B, 68, 2], got {landmarks.shape}")
      layout = self.five_point_layout if landmarks.shape[1] == 5 else "dlib68"
    return face_chip.extract_face_chips(images, landmarks, dlib_resnet.CHIP_SIZE,
                                        dlib_resnet.CHIP_PADDING, layout)

  def embed(self, images, landmarks=None):
    """Aligned crops `[B, S, S, 3]` RGB 0-255 (+ landmarks in the crop) -> `[B, 128]`."""
    return self.model(self.chips(images, landmarks), training=False)


class FaceNetEncoder(IdentityEncoder):
  """FaceNet's 1792-d pooled feature (or the 512-d embedding) of the whole crop.

  Args:
    model: a `facenet` Keras model (e.g. `facenet.load(path)`).
    output: "pool" (the GCN release's feature) or "embeddings".
  """

  kind = "facenet"

  def __init__(self, model, output="pool"):
    super().__init__(name="facenet_encoder")
    if output not in ("pool", "embeddings"):
      raise ValueError(f"output must be 'pool' or 'embeddings', got {output!r}")
    self.model, self.output = model, output
    self.feature_dim = facenet.POOL_DIM if output == "pool" else int(model.outputs[1].shape[-1])

  def embed(self, images, landmarks=None):
    """Aligned crops `[B, S, S, 3]` RGB 0-255 -> `[B, 1792]` (landmarks unused)."""
    del landmarks  # the release feeds the whole aligned crop
    pool, embeddings = self.model(facenet.preprocess(check_images(images)), training=False)
    return pool if self.output == "pool" else embeddings


def load_encoder(kind="auto", facenet_path=None, checkpoint_dir="checkpoints"):
  """An identity encoder by name.

  Args:
    kind: "facenet", "dlib", or "auto" (FaceNet when its weights are found,
      else dlib, saying so in the log).
    facenet_path: FaceNet's .pb / checkpoint / folder (default:
      `checkpoint_dir`/facenet/, see checkpoints/README.md).

  Raises:
    EncoderUnavailable: "facenet" without weights (names where they belong).
    GraphFormatError: the FaceNet file is unreadable or not FaceNet.
  """
  if kind not in KINDS:
    raise ValueError(f"identity encoder must be one of {KINDS}, got {kind!r}")
  path = facenet_path or facenet.default_path(checkpoint_dir)
  if path is not None and not os.path.exists(path) and not os.path.isfile(path + ".index"):
    raise EncoderUnavailable(f"{path}: no such FaceNet file or checkpoint")
  if kind == "dlib" or (kind == "auto" and path is None):
    if kind == "auto":
      logging.info("FaceNet weights not found under %s (%s); using dlib's face-recognition "
                   "ResNet (128-d) as the identity encoder",
                   os.path.join(checkpoint_dir, "facenet"), " or ".join(facenet.CHECKPOINT_NAMES))
    return DlibEncoder()
  if path is None:
    raise EncoderUnavailable(
        f"FaceNet weights not found: put {' or '.join(facenet.CHECKPOINT_NAMES)} (+ .index/"
        f".data) in {os.path.join(checkpoint_dir, 'facenet')}/ (see checkpoints/README.md)")
  return FaceNetEncoder(facenet.load(path))


def export_saved_model(encoder, path, image_size=224, landmark_count=5):
  """Writes a SavedModel: `serving_default(images [None, S, S, 3])` -> {features}, and for
  encoders that use landmarks also `with_landmarks(images, landmarks [None, P, 2])`."""
  module = tf.Module()
  module.encoder = encoder
  module.model = encoder.model
  image_spec = tf.TensorSpec([None, image_size, image_size, 3], tf.float32, "images")

  @tf.function(input_signature=[image_spec])
  def serve(images):
    return {"features": encoder.embed(images)}

  signatures = {"serving_default": serve}
  if encoder.uses_landmarks:
    @tf.function(input_signature=[image_spec,
                                  tf.TensorSpec([None, landmark_count, 2], tf.float32, "landmarks")])
    def serve_landmarks(images, landmarks):
      return {"features": encoder.embed(images, landmarks)}
    signatures["with_landmarks"] = serve_landmarks
  module.serve = serve
  tf.saved_model.save(module, path, signatures=signatures)
