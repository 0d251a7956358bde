"""The texture-refinement forward pass (SPEC 1, 3, 5.1, 6.1): coarse face -> fine albedo -> renders.

    refinement = TextureRefinement(face_model, sampling, encoder)
    out = refinement(batch, training=True)     # batch from gcn_face.records

Given a batch (aligned crop, skin mask, Deep3D coefficients, landmarks):
face formation gives shape, pose, normals, the coarse PCA albedo T_pca and SH
lighting; the refiner input is sampled from the photo; the embedding is the
identity encoder's feature of the photo (plus R-Net pool5 when an R-Net is
given, as the release); the MeshGenerator makes T'. Both albedos are lit and
rendered with one rasterization (nothing upstream of the vertices trains, so
only colours need gradients, SPEC 1).
"""

import numpy as np
import tensorflow as tf

import renderer
from deep3dface import face_model as face_model_lib, fitting, posing
from gcn_face import graph as graph_lib, losses, masks, networks, refiner_input, symmetry


def to_unit(values_255):
  """[0, 255] -> [-1, 1] (x / 127.5 - 1)."""
  return values_255 / 127.5 - 1.0


def to_255(values_unit):
  return (values_unit + 1.0) * 127.5


def lit_colors(albedo, shading):
  """SH-lit colours on the [-1, 1] scale, clipped as the release does (base_model.py clips
  the lit colour to [0, 1]): albedo `[B, N, 3]` ([-1, 1]) times shading `[B, N, 3]`."""
  return tf.clip_by_value(to_unit(to_255(albedo) * shading), -1.0, 1.0)


def render(clip_vertices, triangles, colors):
  """Renders per-vertex colours `[B, N, C]` (any scale) into Deep3D's 224 x 224 crop.

  Returns (images `[B, 224, 224, C]` top-down, coverage alpha `[B, 224, 224]`);
  gradients reach the colours only (the geometry is held fixed).
  """
  return fitting.render_colors(tf.stop_gradient(clip_vertices), triangles, colors)


class TextureRefinement(tf.Module):
  """Face formation + MeshGenerator + rendering.

  Args:
    face_model: deep3dface.face_model.FaceModel of the dataset's morphable model.
    sampling: gcn_face.mesh_sampling.Sampling of that model's mesh.
    encoder: gcn_face.identity.encoder.IdentityEncoder (frozen).
    model, wide, nz: MeshGenerator options (SPEC 3.4-3.7).
    refiner_mode: "code" (7 channels, the release) or "paper" (3).
    rnet: optional R-Net Keras model (`deep3dface.rnet`); its pool5 joins the
      embedding as in the release.
    ablation: networks.ABLATIONS ("no_decoder", "no_refiner": that branch left out).
    start, residual_gain: networks.STARTS ("release": tanh output; "coarse": a residual on
      T_pca, exactly T_pca at initialisation) and the residual branch's gain.
    exact_sampling: photo colours P (refiner input and L_proj) sampled bilinearly where the
      vertices project, instead of the release's rounding half a pixel off (SPEC 10.8).
  """

  def __init__(self, face_model, sampling, encoder, model="normal", wide=False, nz=networks.NZ,
               refiner_mode="code", rnet=None, ablation="none", start="release",
               residual_gain=1.0, exact_sampling=False, name="texture_refinement"):
    super().__init__(name=name)
    self.face_model = face_model
    self.encoder, self.rnet, self.refiner_mode = encoder, rnet, refiner_mode
    self.exact_sampling = exact_sampling
    self.generator = networks.MeshGenerator(graph_lib.MeshGraph(sampling), model, wide, nz,
                                            ablation=ablation, start=start,
                                            residual_gain=residual_gain)
    self.triangles = face_model.triangles
    mean_shape = face_model.mean_shape.numpy().reshape(-1, 3)
    self.symmetric_pairs = tf.constant(symmetry.mirror_pairs(mean_shape), tf.int32)
    self.embedding_dim = encoder.feature_dim + (networks.RNET_POOL5_DIM if rnet else 0)
    self.channels = refiner_input.CHANNELS[refiner_mode]
    self.generator((tf.zeros([1, self.embedding_dim]),
                    tf.zeros([1, face_model.num_vertices, self.channels])))

  def embedding(self, images_255, landmarks):
    """(frozen face embedding `[B, E]`, identity features `[B, D]`) of the photos."""
    identity = tf.stop_gradient(self.encoder.embed(images_255, landmarks))
    if self.rnet is None:
      return identity, identity
    pool5 = self.rnet(tf.reverse(images_255, axis=[-1]), training=False)[1]
    return tf.stop_gradient(tf.concat([pool5, identity], -1)), identity

  def generate(self, batch, training=False, face_model=None):
    """The MeshGenerator's albedo T' and what it was computed from, without rendering.

    Args:
      batch: as `__call__`.
      face_model: the FaceModel that forms the face (default: this module's; `gcn_face.export`
        passes one of standard TensorFlow ops only).

    Returns:
      dict: face (FaceOutput), image (`[B, 224, 224, 3]` on [-1, 1]), image_255, mask,
      eroded_mask, coarse_albedo, fine_albedo (`[B, N, 3]` on [-1, 1]), shading (`[B, N, 3]`
      SH factor), image_colors, visibility `[B, N]`, embedding, identity_features.
    """
    image_255 = tf.convert_to_tensor(batch["image"], tf.float32)
    mask = tf.convert_to_tensor(batch["mask"], tf.float32)
    face = (face_model or self.face_model)(batch["coeff"])
    image = to_unit(image_255)
    eroded = masks.eroded_skin_mask(mask)
    coarse_albedo = to_unit(tf.clip_by_value(face.albedo, 0.0, 255.0))
    gamma = face_model_lib.split_coefficients(batch["coeff"]).gamma
    shading = posing.illuminate(tf.ones_like(face.normals), face.normals, gamma)
    image_colors = refiner_input.vertex_colors(image, face.vertices, self.exact_sampling)
    per_vertex, visibility = refiner_input.refiner_input(
        coarse_albedo, image, eroded, face.vertices, face.normals, self.refiner_mode, shading,
        self.exact_sampling, image_colors)
    embedding, identity = self.embedding(image_255, batch["landmarks"])
    fine_albedo = self.generator((embedding, per_vertex), training=training)
    return {"face": face, "image": image, "image_255": image_255, "mask": mask,
            "eroded_mask": eroded, "coarse_albedo": coarse_albedo, "fine_albedo": fine_albedo,
            "shading": shading, "image_colors": image_colors, "visibility": visibility,
            "embedding": embedding, "identity_features": identity}

  def __call__(self, batch, training=False):
    """Runs the module on a batch.

    Args:
      batch: dict with image `[B, 224, 224, 3]` RGB 0-255, mask `[B, 224, 224]`
        {0, 1}, coeff `[B, 257]`, landmarks `[B, 5, 2]` (crop pixels).

    Returns:
      dict of tensors (colours on [-1, 1] unless noted): shape `[B, N, 3]` (canonical,
        dm), image, mask,
      eroded_mask, coarse_albedo, fine_albedo, coarse_colors, fine_colors
      `[B, N, 3]`, image_colors `[B, N, 3]`, visibility `[B, N]`, embedding,
      identity_features (the encoder's features of the photo),
      render_coarse, render_fine `[B, 224, 224, 3]`, render_alpha
      `[B, 224, 224]`, composite_255 (O', 0-255).
    """
    out = self.generate(batch, training)
    face, shading = out.pop("face"), out.pop("shading")
    fine_colors = lit_colors(out["fine_albedo"], shading)
    coarse_colors = lit_colors(out["coarse_albedo"], shading)
    renders, alpha = render(face.clip_vertices, self.triangles,
                            tf.concat([fine_colors, coarse_colors], -1))
    render_fine, render_coarse = renderer.split_channels(renders, [3, 3])
    composite = losses.composite(to_255(tf.clip_by_value(render_fine, -1.0, 1.0)),
                                 out["image_255"], alpha * out["mask"])
    out.update({"shape": face.shape, "coarse_colors": coarse_colors, "fine_colors": fine_colors,
                "render_fine": render_fine, "render_coarse": render_coarse,
                "render_alpha": alpha, "composite_255": composite,
                "landmarks": batch["landmarks"]})
    return out


def skin_indices(model):
  """int32 indices of the model's skin vertices (for L_var)."""
  return np.flatnonzero(np.asarray(model.skin_mask)).astype(np.int32)
