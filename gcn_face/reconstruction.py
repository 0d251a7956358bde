"""Photo -> textured 3D face: detection, alignment, coefficients (R-Net and/or fitting), the
coarse 3DMM texture and the GCN-refined one, and the files people use (scripts/reconstruct.py).

    rec = Reconstructor(model, rnet=None, refinement=None)       # fit mode, coarse texture
    face = rec.reconstruct("photo.jpg")
    write_outputs(face, "out/photo", rec.triangles)
"""

import dataclasses
import json
import os

import numpy as np
import PIL.Image
import scipy.ndimage
import tensorflow as tf

from deep3dface import face_model as face_model_lib, fitting, landmarks, rnet as rnet_lib
from gcn_face import atomic_file, mesh_io, prepare, refinement as refinement_lib

RESULT_FILE = "result.json"  # written last: its presence marks a finished face
BACKGROUND = 255.0  # renders in the strip are shown on white


@dataclasses.dataclass
class Face:
  """One reconstructed face. Colours on [0, 255]; shapes canonical (un-posed), dm."""
  name: str
  photo: np.ndarray  # uint8 [H0, W0, 3]
  transform: object  # deep3dface.align.AlignTransform
  crop: np.ndarray  # uint8 [224, 224, 3]
  mask: np.ndarray  # bool [224, 224]
  landmarks68: np.ndarray  # [68, 2] crop (x, row)
  coeff: np.ndarray  # float32 [257]
  source: str  # "rnet", "fit" or "rnet+fit"
  shape: np.ndarray  # [N, 3]
  normals: np.ndarray  # [N, 3]
  coarse_albedo: np.ndarray  # [N, 3]
  fine_albedo: np.ndarray  # [N, 3] or None without a trained GCN
  coarse_render: np.ndarray  # lit, [224, 224, 3]
  fine_render: np.ndarray  # lit, [224, 224, 3] or None
  alpha: np.ndarray  # render coverage [224, 224]
  fit_terms: dict


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
  """

  def __init__(self, model, rnet=None, refinement=None, fit=False, fit_config=None,
               segmenter="landmarks_colour", all_faces=False):
    self.face_model = (refinement.face_model if refinement is not None
                       else face_model_lib.FaceModel(model))
    self.triangles = np.asarray(model.triangles)
    self.rnet, self.refinement = rnet, refinement
    self.preparer = prepare.FacePreparer(
        segmenter, landmarks.SELECT_ALL if all_faces else landmarks.SELECT_LARGEST)
    self._rnet = tf.function(lambda images: rnet(images, training=False)[0]) if rnet else None
    self._textures = tf.function(self._textures_impl)
    self.fitter = None
    if fit or rnet is None:
      self.fitter = fitting.Fitter(self.face_model, refinement_lib.skin_indices(model), fit_config)

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
    return self._reconstruct(self.preparer.from_photo(path, keep_photo=True), path, name)

  def reconstruct_all(self, path, name=None):
    """Every face of a photo (largest first; the largest only without all_faces) as a list
    of Face, named `name`, `name_face1`, `name_face2`, ..."""
    name = name or path
    return [self._reconstruct(face, path, name if i == 0 else f"{name}_face{i}")
            for i, face in enumerate(self.preparer.all_from_photo(path, keep_photo=True))]

  def _reconstruct(self, face, path, name):
    crop, mask, lm68 = face["image"], face["mask"], face["landmarks68"]
    coeff, source, terms = self.coefficients(crop, lm68, mask)
    if not np.all(np.isfinite(coeff)):
      raise prepare.PrepareError(f"{path}: the coefficients are not finite")
    t = self._textures(crop[None].astype(np.float32), mask[None].astype(np.float32),
                       tf.constant(coeff[None]), face["landmarks"][None].astype(np.float32))
    t = {k: v[0].numpy() for k, v in t.items()}
    return Face(name=name or path, photo=face["photo"], transform=face["transform"], crop=crop,
                mask=mask, landmarks68=lm68, coeff=coeff, source=source,
                shape=t["shape"], normals=t["normals"], coarse_albedo=t["coarse_albedo"],
                fine_albedo=t.get("fine_albedo"), coarse_render=t["coarse_render"],
                fine_render=t.get("fine_render"), alpha=t["alpha"], fit_terms=terms)

  def _textures_impl(self, image, mask, coeff, landmarks):
    """Canonical shape and normals, coarse (and fine) albedo and lit renders of `[1, ...]`."""
    formed = self.face_model(coeff)
    shape = formed.shape
    coarse_render, alpha = refinement_lib.render(formed.clip_vertices, self.face_model.triangles,
                                                 formed.colors)
    out = {"shape": shape, "normals": self.face_model.vertex_normals(shape),
           "coarse_albedo": formed.albedo, "coarse_render": coarse_render, "alpha": alpha}
    if self.refinement is not None:
      fine = self.refinement({"image": image, "mask": mask, "coeff": coeff,
                              "landmarks": landmarks})
      out["fine_albedo"] = refinement_lib.to_255(fine["fine_albedo"])
      out["fine_render"] = refinement_lib.to_255(fine["render_fine"])
    return out


def composite(render, alpha, background):
  """render [H, W, 3] over background ([H, W, 3] or a grey level) by alpha [H, W]."""
  a = np.clip(alpha, 0.0, 1.0)[..., None]
  return np.clip(render, 0, 255) * a + background * (1.0 - a)


def paste_back(photo, crop_rgb, crop_alpha, transform):
  """Blends a crop-space image `[224, 224, 3]` with its alpha into the original photo at full
  resolution (bilinear through the alignment's exact inverse); uint8 `[H0, W0, 3]`."""
  size = crop_alpha.shape[0]
  corners = transform.to_original(np.array([[-0.5, -0.5], [size - 0.5, size - 0.5]]))
  h0, w0 = photo.shape[:2]
  x0, y0 = np.maximum(np.floor(corners[0]).astype(int), 0)
  x1, y1 = np.minimum(np.ceil(corners[1]).astype(int) + 1, [w0, h0])
  out = photo.astype(np.float64)
  if x1 <= x0 or y1 <= y0:
    return photo.copy()
  ys, xs = np.mgrid[y0:y1, x0:x1]
  crop_xy = transform.to_crop(np.stack([xs, ys], -1).astype(np.float64))
  coords = [crop_xy[..., 1], crop_xy[..., 0]]
  alpha = scipy.ndimage.map_coordinates(crop_alpha.astype(np.float64), coords, order=1,
                                        mode="constant", cval=0.0)
  rgb = np.stack([scipy.ndimage.map_coordinates(crop_rgb[..., c].astype(np.float64), coords,
                                                order=1, mode="constant", cval=0.0)
                  for c in range(3)], -1)
  region = out[y0:y1, x0:x1]
  out[y0:y1, x0:x1] = composite(rgb, alpha, region)
  return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _save_png(path, image):
  with atomic_file.atomic_path(path) as tmp:
    PIL.Image.fromarray(np.clip(np.round(image), 0, 255).astype(np.uint8)).save(tmp, "PNG")


def write_outputs(face, directory, triangles):
  """Writes one face's files into `directory`; returns their names.

  crop.png, coeff.npy, coarse.obj / fine.obj (canonical shape in dm, per-vertex albedo as
  integers 0-255 and normals: the original release's format), mesh.ply (the finest texture),
  strip.png (input | coarse render | fine render | overlay) and overlay.png (the overlay
  pasted back onto the photo at full resolution); result.json last.
  """
  os.makedirs(directory, exist_ok=True)

  def join(name):
    return os.path.join(directory, name)

  written = ["crop.png", "coeff.npy", "coarse.obj", "mesh.ply", "strip.png", "overlay.png"]
  _save_png(join("crop.png"), face.crop)
  with atomic_file.atomic_path(join("coeff.npy")) as tmp:
    with open(tmp, "wb") as f:
      np.save(f, face.coeff)

  def obj_colors(albedo):
    return np.clip(np.round(albedo), 0, 255).astype(np.int64)

  mesh_io.write_obj(join("coarse.obj"), face.shape, triangles, obj_colors(face.coarse_albedo),
                    face.normals)
  best_albedo, best_render = face.coarse_albedo, face.coarse_render
  if face.fine_albedo is not None:
    mesh_io.write_obj(join("fine.obj"), face.shape, triangles, obj_colors(face.fine_albedo),
                      face.normals)
    written.append("fine.obj")
    best_albedo, best_render = face.fine_albedo, face.fine_render
  mesh_io.write_ply(join("mesh.ply"), face.shape, triangles, best_albedo, face.normals)
  white = np.full_like(face.crop, BACKGROUND, dtype=np.float64)
  overlay = composite(best_render, face.alpha * face.mask, face.crop.astype(np.float64))
  panels = [face.crop.astype(np.float64), composite(face.coarse_render, face.alpha, white),
            composite(face.fine_render, face.alpha, white) if face.fine_render is not None
            else white, overlay]
  _save_png(join("strip.png"), np.concatenate(panels, axis=1))
  _save_png(join("overlay.png"), paste_back(face.photo, best_render, face.alpha * face.mask,
                                            face.transform))
  result = {"name": face.name, "coefficients": face.source, "fit_terms": face.fit_terms,
            "refined": face.fine_albedo is not None, "files": sorted(written),
            "original_size": list(face.transform.original_size),
            "deep3d_align_params": [float(v) for v in face.transform.deep3d_params]}
  with atomic_file.atomic_path(join(RESULT_FILE)) as tmp, open(tmp, "w") as f:
    json.dump(result, f, indent=1)
  return result
