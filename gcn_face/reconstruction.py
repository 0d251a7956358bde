"""Photo -> textured 3D face: detection, alignment, coefficients (R-Net and/or fitting), the
coarse 3DMM texture and the GCN-refined one, and the files people use (scripts/reconstruct.py).

    rec = Reconstructor(model, rnet=None, refinement=None)       # fit mode, coarse texture
    face = rec.reconstruct("photo.jpg")
    write_outputs(face, "out/photo", rec.triangles)
"""

import dataclasses
import io
import json
import os
import time

import numpy as np
import PIL.Image
import scipy.ndimage
import tensorflow as tf
from absl import logging

import renderer
from deep3dface import face_model as face_model_lib, fitting, landmarks, posing, rnet as rnet_lib
from deep3dface import align, constants
from gcn_face import (atomic_file, mesh_io, metrics, panels, photo_refinement, prepare,
                      refinement as refinement_lib, skin_mask, symmetry, turntable, viewer)
from gcn_face.identity import encoder as identity_encoder

SIZE = fitting.SIZE
RESULT_FILE = "result.json"  # written last: its presence marks a finished face
BACKGROUND = 255.0  # renders in the strip are shown on white


@dataclasses.dataclass
class Face:
  """One reconstructed face. Colours on [0, 255]; shapes canonical (un-posed), dm; images
  224 x 224 aligned with the crop; textures per vertex `[N, 3]` by name ("coarse", "fine" from
  the GCN, "refined" by per-photo refinement), each with its lit render and lit vertex
  colours."""
  name: str
  photo: np.ndarray  # uint8 [H0, W0, 3]
  transform: object  # deep3dface.align.AlignTransform
  crop: np.ndarray  # uint8 [224, 224, 3]
  mask: np.ndarray  # bool [224, 224], the segmenter's skin mask
  holdout: np.ndarray  # bool [224, 224], skin pixels no loss saw
  landmarks68: np.ndarray  # [68, 2] crop (x, row)
  coeff: np.ndarray  # float32 [257]
  source: str  # "rnet", "fit" or "rnet+fit"
  shape: np.ndarray  # [N, 3]
  normals: np.ndarray  # [N, 3]
  clip_vertices: np.ndarray  # [N, 4], the crop's clip space
  albedos: dict  # name -> [N, 3]
  renders: dict  # name -> lit [224, 224, 3]
  colors: dict  # name -> lit per-vertex colours [N, 3]
  alpha: np.ndarray  # render coverage [224, 224]
  overlay_weights: np.ndarray  # [N] opacity in overlay.png: the small face region, soft edge
  fit_terms: dict
  refine_terms: dict
  seconds: dict

  @property
  def best(self):
    """The most refined texture's name."""
    return next(n for n in TEXTURES[::-1] if n in self.albedos)

  @property
  def region(self):
    """bool [224, 224]: where the texture is evaluated (rounded coverage x skin mask)."""
    return (np.round(self.alpha) > 0) & self.mask

  def l1(self):
    """{texture: {"region": masked L1, "heldout": L1 on the held-out pixels}} (0-255 levels,
    gcn_face.metrics.masked_l1) of the lit renders against the crop."""
    crop = self.crop.astype(np.float64)
    heldout = self.region & self.holdout
    return {n: {"region": metrics.masked_l1(r, crop, self.region),
                "heldout": metrics.masked_l1(r, crop, heldout)}
            for n, r in self.renders.items()}


TEXTURES = ("coarse", "fine", "refined")


class Reconstructor:
  """Everything loaded once; `reconstruct(path)` per photo.

  Args:
    model: deep3dface.bfm.MorphableModel (BFM09 front or synthetic).
    rnet: optional R-Net Keras model (`deep3dface.rnet.from_frozen_graph`).
    refinement: optional gcn_face.refinement.TextureRefinement with trained weights.
    fit: fit the coefficients by analysis-by-synthesis (always without an R-Net; from the
      R-Net's estimate with one).
    fit_config: deep3dface.fitting.FitConfig.
    segmenter: skin-mask segmenter of gcn_face.skin_mask (the fitting's photometric mask and
      the GCN's input mask).
    all_faces: reconstruct_all returns every detected face (else the largest only).
    refine_config: gcn_face.photo_refinement.RefineConfig; steps > 0 refines each face on its
      photo (from the GCN's texture when there is a GCN, else from the 3DMM's).
    holdout_fraction, holdout_seed: the skin pixels no loss sees
      (`photo_refinement.holdout_mask`; 0 to use them all).
    encoder: identity encoder of the refinement's L_id (default: the GCN's, else dlib's).
    max_photo_pixels: larger photos are refused from their header (`align.load_image`).
  """

  def __init__(self, model, rnet=None, refinement=None, fit=False, fit_config=None,
               segmenter="landmarks_colour", all_faces=False, refine_config=None,
               holdout_fraction=photo_refinement.HOLDOUT_FRACTION, holdout_seed=0,
               encoder=None, max_photo_pixels=align.MAX_PHOTO_PIXELS):
    self.face_model = (refinement.face_model if refinement is not None
                       else face_model_lib.FaceModel(model))
    self.triangles = np.asarray(model.triangles)
    self.rnet, self.refinement = rnet, refinement
    self.preparer = prepare.FacePreparer(
        segmenter, landmarks.SELECT_ALL if all_faces else landmarks.SELECT_LARGEST,
        max_photo_pixels)
    self._rnet = tf.function(lambda images: rnet(images, training=False)[0],
                             autograph=False) if rnet else None
    self._textures = tf.function(self._textures_impl, autograph=False)
    self.fitter = None
    if fit or rnet is None:
      self.fitter = fitting.Fitter(self.face_model, refinement_lib.skin_indices(model), fit_config)
    self.holdout_fraction, self.holdout_seed = holdout_fraction, holdout_seed
    front = np.zeros(model.num_vertices)
    front[np.asarray(model.front_mask_idx)] = 1.0
    self.overlay_weights = photo_refinement.smooth_vertex_weights(front, self.triangles,
                                                                  OVERLAY_FEATHER)
    self.photo_refiner = None
    config = refine_config or photo_refinement.RefineConfig(steps=0)
    if config.steps > 0:
      if encoder is None and config.identity > 0:
        encoder = (refinement.encoder if refinement is not None
                   else identity_encoder.load_encoder("dlib"))
      pairs = (refinement.symmetric_pairs.numpy() if refinement is not None
               else symmetry.mirror_pairs(self.face_model.mean_shape.numpy().reshape(-1, 3)))
      self.photo_refiner = photo_refinement.PhotoRefiner(self.face_model, pairs, encoder, config)

  def coefficients(self, crop, landmarks68, mask):
    """(coeff [257], source, fit terms) of one aligned crop."""
    init, source, terms = None, "fit", {}
    if self.rnet is not None:
      init = self._rnet(rnet_lib.to_rnet_input(crop[None])).numpy()
      source = "rnet"
    if self.fitter is not None:
      init, terms = self.fitter.fit(crop[None].astype(np.float32), landmarks68[None],
                                    mask[None].astype(np.float32), init)
      terms = {k: float(v[0]) for k, v in terms.items()}
      source = "rnet+fit" if source == "rnet" else "fit"
    return init[0].astype(np.float32), source, terms

  def reconstruct(self, path, name=None):
    """Reconstructs the largest face of a photo.

    Raises:
      gcn_face.prepare.PrepareError: unreadable photo, no face, unusable landmarks.
    """
    return self._reconstruct(self.preparer.from_photo(path, keep_photo=True), path,
                             name or path)

  def reconstruct_all(self, path, name=None):
    """Every face of a photo (largest first; the largest only without all_faces) as a list
    of Face, named `name`, `name_face1`, `name_face2`, ..."""
    name = name or path
    return [self._reconstruct(face, path, name if i == 0 else f"{name}_face{i}")
            for i, face in enumerate(self.preparer.all_from_photo(path, keep_photo=True))]

  def _reconstruct(self, face, path, name):
    clock = time.monotonic()
    crop, mask, lm68 = face["image"], face["mask"], face["landmarks68"]
    holdout = photo_refinement.holdout_mask(mask, name, self.holdout_seed,
                                            self.holdout_fraction)
    seen = (mask & ~holdout).astype(np.float32)  # every loss and the GCN's input mask
    photo = photo_refinement.fill_holdout(crop, holdout)  # all that sees the crop sees this
    coeff, source, terms = self.coefficients(photo, lm68, seen)
    if not np.all(np.isfinite(coeff)):
      raise prepare.PrepareError(f"{path}: the coefficients are not finite")
    seconds = {"coefficients": time.monotonic() - clock}
    t = self._textures(photo[None].astype(np.float32), seen[None], tf.constant(coeff[None]),
                       face["landmarks"][None].astype(np.float32))
    t = {k: v.numpy() for k, v in t.items()}
    albedos = {"coarse": t["coarse_albedo"][0]}
    renders = {"coarse": t["coarse_render"][0]}
    colors = {"coarse": t["coarse_colors"][0]}
    if "fine_albedo" in t:
      albedos["fine"], renders["fine"] = t["fine_albedo"][0], t["fine_render"][0]
      colors["fine"] = t["fine_colors"][0]
    seconds["textures"] = time.monotonic() - clock - seconds["coefficients"]
    refine_terms = {}
    if self.photo_refiner is not None:
      start = albedos["fine" if "fine" in albedos else "coarse"]
      face_pixels = refinement_pixels(mask, lm68, t["alpha"][0])
      refined, refine_terms = self.photo_refiner.refine(
          refinement_lib.to_unit(start[None]),
          refinement_lib.to_unit(np.clip(albedos["coarse"], 0, 255)[None]), coeff[None],
          photo[None].astype(np.float32), (face_pixels & ~holdout)[None].astype(np.float32),
          face_pixels[None].astype(np.float32), face["landmarks"][None].astype(np.float32))
      lit = self._lit(tf.constant(refined), tf.constant(coeff[None]))
      albedos["refined"] = refinement_lib.to_255(refined)[0]
      renders["refined"], colors["refined"] = lit[0].numpy()[0], lit[1].numpy()[0]
      seconds["refine"] = time.monotonic() - clock - sum(seconds.values())
    seconds["total"] = time.monotonic() - clock
    return Face(name=name, photo=face["photo"], transform=face["transform"], crop=crop,
                mask=mask, holdout=holdout, landmarks68=lm68, coeff=coeff, source=source,
                shape=t["shape"][0], normals=t["normals"][0],
                clip_vertices=t["clip_vertices"][0], albedos=albedos, renders=renders,
                colors=colors, alpha=t["alpha"][0], overlay_weights=self.overlay_weights,
                fit_terms=terms,
                refine_terms=refine_terms, seconds=seconds)

  def _shading(self, formed, coeff):
    gamma = face_model_lib.split_coefficients(coeff).gamma
    return posing.illuminate(tf.ones_like(formed.normals), formed.normals, gamma)

  def _lit(self, albedo_unit, coeff):
    """(lit render [1, 224, 224, 3], lit vertex colours [1, N, 3]) on [0, 255] of an albedo
    on [-1, 1]."""
    formed = self.face_model(coeff)
    colors = refinement_lib.to_255(refinement_lib.lit_colors(albedo_unit,
                                                             self._shading(formed, coeff)))
    rendered, _ = refinement_lib.render(formed.clip_vertices, self.face_model.triangles, colors)
    return rendered, colors

  def _textures_impl(self, image, mask, coeff, landmarks):
    """Shape, normals, clip-space vertices, coarse (and fine) albedo, lit vertex colours and
    renders of `[1, ...]`."""
    formed = self.face_model(coeff)
    shape = formed.shape
    coarse_unit = refinement_lib.to_unit(tf.clip_by_value(formed.albedo, 0.0, 255.0))
    shading = self._shading(formed, coeff)
    coarse_colors = refinement_lib.to_255(refinement_lib.lit_colors(coarse_unit, shading))
    coarse_render, alpha = refinement_lib.render(formed.clip_vertices, self.face_model.triangles,
                                                 coarse_colors)
    out = {"shape": shape, "normals": self.face_model.vertex_normals(shape),
           "clip_vertices": formed.clip_vertices, "coarse_albedo": formed.albedo,
           "coarse_colors": coarse_colors, "coarse_render": coarse_render, "alpha": alpha}
    if self.refinement is not None:
      fine = self.refinement({"image": image, "mask": mask, "coeff": coeff,
                              "landmarks": landmarks})
      out["fine_albedo"] = refinement_lib.to_255(fine["fine_albedo"])
      out["fine_render"] = refinement_lib.to_255(fine["render_fine"])
      out["fine_colors"] = refinement_lib.to_255(fine["fine_colors"])
    return out


def composite(render, alpha, background):
  """render [H, W, 3] over background ([H, W, 3] or a grey level) by alpha [H, W]."""
  a = np.clip(alpha, 0.0, 1.0)[..., None]
  return np.clip(render, 0, 255) * a + background * (1.0 - a)


OVERLAY_FEATHER = 3  # vertex rings over which overlay.png fades out at the face region's edge


def refinement_pixels(mask, landmarks68, alpha):
  """bool `[224, 224]`: the face pixels of the refinement: the skin and the eyes, brows and
  mouth (face parts, not occluders) where the face is rendered (the pixel loss sees them
  without the held-out ones)."""
  return (mask | skin_mask.feature_mask(mask.shape, landmarks68)) & (alpha > 0.5)


def photo_clip_vertices(clip_vertices, transform, box):
  """The crop's clip-space vertices `[N, 4]` -> clip space of the photo's pixel box
  (x0, y0, x1, y1) (exclusive ends): exact, since the alignment is a per-axis scale and shift
  of pixel coordinates, affine in normalised device coordinates and so linear in clip space."""
  half = SIZE / 2.0
  ratio = np.array(transform.resized_size, np.float64) / np.array(transform.original_size)
  scale = 1.0 / ratio  # photo pixels per crop pixel, per axis
  shift = (np.array(transform.offset, np.float64) + 0.5) / ratio - 0.5
  x0, y0, x1, y1 = box
  width, height = x1 - x0, y1 - y0
  # crop col = (ndc_x + 1) 112 - 0.5, crop row = (1 - ndc_y) 112 - 0.5 (pixel centres)
  ax = 2.0 * half * scale[0] / width
  bx = 2.0 * (scale[0] * (half - 0.5) + shift[0] - x0 + 0.5) / width - 1.0
  ay = 2.0 * half * scale[1] / height
  by = 1.0 - 2.0 * (scale[1] * (half - 0.5) + shift[1] - y0 + 0.5) / height
  x, y, z, w = np.moveaxis(np.asarray(clip_vertices, np.float64), -1, 0)
  return np.stack([ax * x + bx * w, ay * y + by * w, z, w], -1).astype(np.float32)


def photo_box(clip_vertices, transform):
  """(x0, y0, x1, y1): the photo pixels the face's projection covers (clamped to the photo)."""
  ndc = clip_vertices[:, :2] / clip_vertices[:, 3:4]
  crop = np.stack([(ndc[:, 0] + 1.0) * SIZE / 2 - 0.5, (1.0 - ndc[:, 1]) * SIZE / 2 - 0.5], -1)
  points = transform.to_original(crop)
  w0, h0 = transform.original_size
  x0, y0 = np.maximum(np.floor(points.min(0)).astype(int) - 1, 0)
  x1, y1 = np.minimum(np.ceil(points.max(0)).astype(int) + 2, [w0, h0])
  return int(x0), int(y0), int(x1), int(y1)


def render_in_photo(face, colors, triangles, weights=None, outline=None, feather=0.0):
  """The lit render of per-vertex colours `[N, 3]` (0-255) over the photo at the photo's own
  resolution (rasterized there, not resized), with per-vertex opacity `weights` `[N]` (default
  1: the whole mesh), inside a photo-pixel polygon `outline` `[P, 2]` (default: everywhere)
  whose edge is blurred by `feather` pixels; uint8 `[H0, W0, 3]`."""
  x0, y0, x1, y1 = photo_box(face.clip_vertices, face.transform)
  out = face.photo.copy()
  if x1 <= x0 or y1 <= y0:
    return out
  clip = photo_clip_vertices(face.clip_vertices, face.transform, (x0, y0, x1, y1))
  triangles = tf.constant(np.asarray(triangles, np.int32))
  raster = renderer.rasterize(tf.constant(clip[None]), triangles, x1 - x0, y1 - y0)
  opacity = np.ones(len(colors)) if weights is None else np.asarray(weights, np.float64)
  attributes = np.concatenate([colors, opacity[:, None]], -1)[None]
  image = renderer.interpolate(tf.constant(attributes, tf.float32), triangles,
                               raster.triangle_ids, raster.barycentrics).numpy()[0, ::-1]
  region = out[y0:y1, x0:x1].astype(np.float64)
  alpha = image[..., 3]
  if outline is not None:
    alpha = alpha * _feathered(outline - np.array([x0, y0]), alpha.shape, feather)
  out[y0:y1, x0:x1] = np.clip(np.round(composite(image[..., :3], alpha, region)), 0,
                              255).astype(np.uint8)
  return out


def _feathered(polygon, shape, sigma):
  """float `[H, W]` in [0, 1]: a polygon's inside, its edge blurred by `sigma` pixels."""
  inside = skin_mask.polygon_mask(shape, polygon).astype(np.float64)
  return scipy.ndimage.gaussian_filter(inside, sigma) if sigma > 0 else inside


def overlay(face, triangles):
  """overlay.png: the most refined texture's render over the photo at its resolution, where
  the photo shows the face: the small face region of the mesh (soft edge) within the
  landmarks' face outline (jaw and forehead, feathered by a crop pixel): the mesh's margin
  beyond the jaw is not pasted onto the neck."""
  scale = face.transform.original_size[0] / face.transform.resized_size[0]
  outline = face.transform.to_original(skin_mask.face_outline(face.landmarks68))
  return render_in_photo(face, face.colors[face.best], triangles, face.overlay_weights,
                         outline, feather=scale)


def to_crop(image, transform):
  """A photo-sized image `[H0, W0, 3]` cut to the aligned crop as align_image cuts the photo
  (resize, then the crop box): uint8 `[224, 224, 3]`."""
  left, top = transform.offset
  resized = PIL.Image.fromarray(image).resize(tuple(transform.resized_size), PIL.Image.BICUBIC)
  return np.asarray(resized.crop((left, top, left + SIZE, top + SIZE)))


def _save_png(path, image):
  with atomic_file.atomic_path(path) as tmp:
    PIL.Image.fromarray(np.clip(np.round(image), 0, 255).astype(np.uint8)).save(tmp, "PNG")


def _png_bytes(image):
  buffer = io.BytesIO()
  PIL.Image.fromarray(np.asarray(image, np.uint8)).save(buffer, "PNG")
  return buffer.getvalue()


LABELS = {"coarse": "coarse (3DMM)", "fine": "fine (GCN)", "refined": "refined (per photo)",
          "photo": "photo (projected)"}
GLB_SPACING = 0.25  # metres between the meshes of mesh.glb (a face is ~0.2 m wide)
UNSEEN_GREY = 128.0  # the photo colour of vertices the photo does not show (viewer.html)


def obj_colors(albedo):
  """OBJ vertex colours: an albedo on [0, 255] as floats clipped to [0, 1] (Deep3D's demo
  writes clip(colour) / 255; trimesh, Blender and MeshLab read floats)."""
  return np.clip(np.asarray(albedo, np.float64), 0.0, 255.0) / 255.0


def front_facing(triangles, shape, normals):
  """The triangles wound counter-clockwise about the face's outward normals (glTF's front
  faces): flipped when their geometric normals disagree with `normals` on the whole."""
  t = np.asarray(triangles, np.int64)
  cross = np.cross(shape[t[:, 1]] - shape[t[:, 0]], shape[t[:, 2]] - shape[t[:, 0]])
  agree = np.sum(cross * (normals[t[:, 0]] + normals[t[:, 1]] + normals[t[:, 2]]))
  return t if agree >= 0 else t[:, ::-1].copy()


def photo_colors(face, triangles):
  """The aligned photo's colour under each vertex `[N, 3]` (0-255, bilinear) where the vertex
  is visible in the crop (not behind the mesh, inside the image), UNSEEN_GREY elsewhere."""
  clip = np.asarray(face.clip_vertices, np.float64)
  ndc = clip[:, :3] / clip[:, 3:4]
  col = (ndc[:, 0] + 1.0) * SIZE / 2.0 - 0.5
  row = (1.0 - ndc[:, 1]) * SIZE / 2.0 - 0.5
  raster = renderer.rasterize(tf.constant(face.clip_vertices[None], tf.float32),
                              tf.constant(np.asarray(triangles, np.int32)), SIZE, SIZE)
  depth = raster.depth.numpy()[0, ::-1]  # row 0 at the top, as the crop
  ids = raster.triangle_ids.numpy()[0, ::-1]
  r = np.clip(np.round(row).astype(int), 0, SIZE - 1)
  c = np.clip(np.round(col).astype(int), 0, SIZE - 1)
  inside = (row > -0.5) & (row < SIZE - 0.5) & (col > -0.5) & (col < SIZE - 0.5)
  # A vertex is seen when nothing lies in front of it at its pixel (a few per cent of the
  # depth range of tolerance: neighbouring triangles share the vertex's depth there).
  visible = inside & (ids[r, c] >= 0) & (ndc[:, 2] <= depth[r, c] + 2e-3)
  colors = np.stack([scipy.ndimage.map_coordinates(face.crop[..., k].astype(np.float64),
                                                   [row, col], order=1, mode="nearest")
                     for k in range(3)], -1)
  return np.where(visible[:, None], colors, UNSEEN_GREY)


def write_outputs(face, directory, triangles, with_turntable=True, with_viewer=True):
  """Writes one face's files into `directory`; returns result.json's content.

  crop.png; coeff.npy; coarse.obj, fine.obj (the GCN's), refined.obj (per-photo refinement):
  canonical shape in dm, per-vertex albedo as floats in [0, 1] and normals; mesh.ply (the most
  refined texture); mesh.glb (glTF 2.0 binary, metres: one mesh per texture side by side,
  sharing positions, normals and triangles); 224 x 224 and aligned with the crop:
  skin_mask.png (the evaluated region: rounded coverage x skin mask), holdout_mask.png (the
  held-out pixels of that region), render_<texture>.png (lit, black where there is no face);
  strip.png (labelled: photo | each texture | overlay); overlay.png (the most refined texture
  rendered over the photo at the photo's resolution); turntable.gif (coarse | most refined,
  turning +-60 degrees; `with_turntable`); viewer.html (a 3D viewer of every texture and the
  projected photo; `with_viewer`, skipped with a warning without three.js); result.json last
  (per texture the masked L1 on the region and on the held-out pixels, seconds).
  """
  os.makedirs(directory, exist_ok=True)

  def join(name):
    return os.path.join(directory, name)

  written = ["crop.png", "coeff.npy", "mesh.ply", "mesh.glb", "skin_mask.png",
             "holdout_mask.png", "strip.png", "overlay.png"]
  _save_png(join("crop.png"), face.crop)
  with atomic_file.atomic_path(join("coeff.npy")) as tmp:
    with open(tmp, "wb") as f:
      np.save(f, face.coeff)
  for name, albedo in face.albedos.items():
    mesh_io.write_obj(join(f"{name}.obj"), face.shape, triangles, obj_colors(albedo),
                      face.normals)
    _save_png(join(f"render_{name}.png"), composite(face.renders[name], face.alpha, 0.0))
    written += [f"{name}.obj", f"render_{name}.png"]
  best = face.best
  mesh_io.write_ply(join("mesh.ply"), face.shape, triangles, face.albedos[best], face.normals)
  front = front_facing(triangles, face.shape, face.normals)
  mesh_io.write_glb(join("mesh.glb"), face.shape * constants.METRES_PER_UNIT, front,
                    {n: obj_colors(a) for n, a in face.albedos.items()}, face.normals,
                    spacing=GLB_SPACING)
  _save_png(join("skin_mask.png"), face.region * 255.0)
  _save_png(join("holdout_mask.png"), (face.region & face.holdout) * 255.0)
  white = np.full(face.crop.shape, BACKGROUND)
  pasted = overlay(face, triangles)
  strip = ([face.crop] + [composite(face.renders[n], face.alpha, white) for n in face.albedos] +
           [to_crop(pasted, face.transform)])
  labels = ["photo"] + [LABELS[n] for n in face.albedos] + ["overlay"]
  _save_png(join("strip.png"), panels.labelled_strip(strip, labels))
  _save_png(join("overlay.png"), pasted)
  if with_turntable:
    shown = ["coarse"] + ([best] if best != "coarse" else [])
    frames = turntable.frames_with_labels(face.shape, triangles,
                                          [face.albedos[n] for n in shown],
                                          [LABELS[n] for n in shown])
    turntable.write_gif(join("turntable.gif"), frames)
    written.append("turntable.gif")
  if with_viewer:
    colors = dict(face.albedos, photo=photo_colors(face, triangles))
    order = [best] + [n for n in colors if n != best]
    try:
      viewer.write(join("viewer.html"), face.shape, triangles, {n: colors[n] for n in order},
                   LABELS, face.name, _png_bytes(face.crop))
      written.append("viewer.html")
    except viewer.ViewerUnavailable as e:
      logging.warning("no viewer.html: %s", e)
  result = {"name": face.name, "coefficients": face.source, "fit_terms": face.fit_terms,
            "refined": "fine" in face.albedos, "refined_per_photo": "refined" in face.albedos,
            "textures": list(face.albedos), "l1": face.l1(),
            "heldout_pixels": int((face.region & face.holdout).sum()),
            "region_pixels": int(face.region.sum()), "refine_terms": face.refine_terms,
            "seconds": {k: round(v, 3) for k, v in face.seconds.items()},
            "files": sorted(written), "original_size": list(face.transform.original_size),
            "deep3d_align_params": [float(v) for v in face.transform.deep3d_params]}
  with atomic_file.atomic_path(join(RESULT_FILE)) as tmp, open(tmp, "w") as f:
    json.dump(result, f, indent=1)
  return result


def write_summary(output_dir, names):
  """summary.md and summary.csv in `output_dir`: per face (the folders `names` with a
  result.json) each texture's masked L1 on the evaluated region and on the held-out pixels,
  and the seconds; the means and how often each texture beats the coarse one. Returns the
  markdown table's lines."""
  results = []
  for name in names:
    path = os.path.join(output_dir, name, RESULT_FILE)
    if os.path.isfile(path):
      with open(path) as f:
        results.append(json.load(f))
  textures = [t for t in TEXTURES if any(t in r.get("l1", {}) for r in results)]
  columns = ([f"{t} L1" for t in textures] + [f"{t} held-out L1" for t in textures] +
             ["seconds"])
  rows = []
  for r in results:
    l1 = r.get("l1", {})
    rows.append([r["name"]] + [l1.get(t, {}).get("region", float("nan")) for t in textures] +
                [l1.get(t, {}).get("heldout", float("nan")) for t in textures] +
                [r.get("seconds", {}).get("total", float("nan"))])
  values = np.array([row[1:] for row in rows], np.float64).reshape(len(rows), len(columns))
  lines = ["| photo | " + " | ".join(columns) + " |", "|" + " --- |" * (len(columns) + 1)]
  lines += [f"| {row[0]} | " + " | ".join(f"{v:.2f}" for v in row[1:]) + " |" for row in rows]
  if rows:
    lines.append("| **mean** | " + " | ".join(f"**{v:.2f}**" for v in np.nanmean(values, 0))
                 + " |")
  notes = []
  for kind, offset in (("region", 0), ("held-out", len(textures))):
    for i, t in enumerate(textures[1:], 1):
      wins = int(np.sum(values[:, offset + i] <= values[:, offset]))
      notes.append(f"{t} <= coarse ({kind} L1) on {wins} of {len(rows)} faces")
  text = ["# Reconstructions: masked L1 of the lit renders (0-255 levels)", "",
          "Region: rounded render coverage x skin mask (skin_mask.png); held-out: its pixels "
          "that no loss saw (holdout_mask.png).", ""] + lines + [""] + [f"- {n}" for n in notes]
  with atomic_file.atomic_path(os.path.join(output_dir, "summary.md")) as tmp, \
       open(tmp, "w") as f:
    f.write("\n".join(text) + "\n")
  with atomic_file.atomic_path(os.path.join(output_dir, "summary.csv")) as tmp, \
       open(tmp, "w") as f:
    f.write(",".join(["photo"] + columns) + "\n")
    for row in rows:
      f.write(",".join([row[0]] + [f"{v:.4f}" for v in row[1:]]) + "\n")
  return lines + notes
