"""Per-photo data preparation: detection, alignment, landmarks and skin mask (no TensorFlow).

`FacePreparer` runs in worker processes of scripts/prepare_data.py; R-Net
coefficients are added afterwards in batches. Inputs: a photo (+ optionally the
original's skin mask, a PNG whose alpha is 255 on skin) or an already aligned
224 x 224 RGBA record of the release's `CelebA_RGBA.bin`.
"""

import os

import numpy as np
import PIL.Image

from deep3dface import align, constants, landmarks
from gcn_face import skin_mask

RGBA_RECORD_BYTES = constants.IMAGE_SIZE * constants.IMAGE_SIZE * 4 * 4  # float32 [224,224,4]
CROP_PADDING = 0.3  # the release pads aligned crops by 30 % (replicate) before detecting
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class PrepareError(ValueError):
  """One input that yields no example; the message is one line naming it."""


def list_images(directory):
  """Sorted image files (by extension) under `directory`, relative paths."""
  if not os.path.isdir(directory):
    raise PrepareError(f"{directory}: no such folder")
  found = []
  for root, _, files in os.walk(directory):
    for name in files:
      if name.lower().endswith(IMAGE_EXTENSIONS):
        found.append(os.path.relpath(os.path.join(root, name), directory))
  return sorted(found)


def read_alpha_mask(path):
  """The original's mask format: alpha (or a single channel) 255 on skin -> bool `[H, W]`."""
  try:
    align.check_regular_file(path)
  except align.InputError as e:
    raise PrepareError(str(e)) from None
  try:
    with PIL.Image.open(path) as img:
      if img.size[0] * img.size[1] > align.MAX_PHOTO_PIXELS:
        raise PrepareError(f"{path}: mask is {img.size[0]}x{img.size[1]} pixels, more than "
                           f"{align.MAX_PHOTO_PIXELS / 1e6:g} MP")
      img.load()
      array = np.asarray(img)
  except PrepareError:
    raise
  except (OSError, SyntaxError, ValueError) as e:
    raise PrepareError(f"{path}: unreadable mask ({str(e).splitlines()[0]})") from None
  if array.ndim == 3:
    array = array[..., -1]
  return array > 127


def celeba_rgba_count(path):
  """Records in a CelebA_RGBA.bin (headerless float32 [224, 224, 4] each)."""
  size = os.path.getsize(path)
  if size == 0 or size % RGBA_RECORD_BYTES:
    raise PrepareError(f"{path}: {size} bytes is not a whole number of {RGBA_RECORD_BYTES}-byte "
                       "[224, 224, 4] float32 records (truncated or not CelebA_RGBA.bin)")
  return size // RGBA_RECORD_BYTES


def read_celeba_rgba(path, index):
  """Record `index`: (RGB uint8 `[224, 224, 3]`, mask bool `[224, 224]`); RGB was on [-1, 1],
  A = alpha / 255 (SPEC 7)."""
  with open(path, "rb") as f:
    f.seek(index * RGBA_RECORD_BYTES)
    data = np.frombuffer(f.read(RGBA_RECORD_BYTES), "<f4")
  if data.size * 4 != RGBA_RECORD_BYTES:
    raise PrepareError(f"{path}: record {index} is truncated")
  rgba = data.reshape(constants.IMAGE_SIZE, constants.IMAGE_SIZE, 4)
  if not np.all(np.isfinite(rgba)):
    raise PrepareError(f"{path}: record {index} contains NaN or infinity")
  rgb = np.clip((rgba[..., :3] + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
  return rgb, rgba[..., 3] > 0.5


class FacePreparer:
  """Photo -> aligned crop, landmarks in the crop and skin mask.

  Args:
    segmenter: `skin_mask.SEGMENTERS` name or 'module:function'.
    select: deep3dface.landmarks.SELECT_LARGEST, or SELECT_ALL for all_from_photo.
    max_photo_pixels: larger photos are refused from their header (`align.load_image`).
  """

  def __init__(self, segmenter="landmarks_colour", select=landmarks.SELECT_LARGEST,
               max_photo_pixels=align.MAX_PHOTO_PIXELS):
    self.detector = landmarks.LandmarkDetector(select=select)
    self.segment = skin_mask.load_segmenter(segmenter)
    self.max_photo_pixels = max_photo_pixels

  def from_photo(self, path, mask_path=None, keep_photo=False):
    """Returns dict(image uint8 [224,224,3], mask bool, landmarks [5,2], landmarks68 [68,2]);
    with keep_photo also the photo and the alignment's transform (deep3dface.align)."""
    return self.all_from_photo(path, mask_path, keep_photo, limit=1)[0]

  def all_from_photo(self, path, mask_path=None, keep_photo=False, limit=None):
    """from_photo's dict for each face of the photo (largest first, at most `limit`)."""
    try:
      image = align.load_image(path, self.max_photo_pixels)
    except align.InputError as e:
      raise PrepareError(str(e)) from None
    faces = self.detector.detect(image)[:limit]
    if not faces:
      raise PrepareError(f"{path}: no face found")
    original = None
    if mask_path is not None:
      original = read_alpha_mask(mask_path)
      if original.shape != image.shape[:2]:
        raise PrepareError(f"{mask_path}: mask is {original.shape[1]}x{original.shape[0]}, the "
                           f"photo {image.shape[1]}x{image.shape[0]}")
    return [self._aligned_face(image, face, path, original, keep_photo) for face in faces]

  def _aligned_face(self, image, face, path, original_mask, keep_photo):
    try:
      aligned = align.align_image(image, face.five)
    except ValueError as e:
      raise PrepareError(f"{path}: cannot align ({e})") from None
    lm68 = aligned.transform.to_crop(face.landmarks)
    if original_mask is not None:
      mask_rgb = np.repeat(original_mask[..., None].astype(np.uint8) * 255, 3, axis=2)
      mask = align.align_image(mask_rgb, face.five, resample="bilinear").image[..., 0] > 127
    else:
      mask = np.asarray(self.segment(aligned.image, lm68), bool)
    # The crop's exact geometry (Deep3D's own landmark formula ignores the rounding of the
    # crop offset by up to a pixel).
    result = {"image": aligned.image, "mask": mask, "landmarks": align.five_from_68(lm68),
              "landmarks68": lm68}
    if keep_photo:
      result.update(photo=image, transform=aligned.transform)
    return result

  def from_crop(self, image, mask, name):
    """An aligned crop (CelebA_RGBA.bin) -> the same dict; landmarks detected on the crop
    padded by 30 % replicated border, as the release's test-time landmarks."""
    pad = int(round(CROP_PADDING * image.shape[0]))
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    faces = self.detector.detect(padded)
    if not faces:
      raise PrepareError(f"{name}: no face found in the aligned crop")
    lm68 = faces[0].landmarks - pad
    return {"image": image, "mask": mask, "landmarks": align.five_from_68(lm68),
            "landmarks68": lm68}


_WORKER = {}


def init_worker(segmenter, max_photo_pixels=align.MAX_PHOTO_PIXELS):
  """Process-pool initializer: one detector per worker (dlib objects do not pickle)."""
  _WORKER["preparer"] = FacePreparer(segmenter, max_photo_pixels=max_photo_pixels)


def prepare_item(item):
  """Worker entry: item = (position, kind, name, a, b) -> (position, name, dict or error str).

  kind "photo": a = photo path, b = mask path or None; kind "rgba": a = .bin path, b = index.
  """
  position, kind, name, a, b = item
  preparer = _WORKER["preparer"]
  try:
    if kind == "photo":
      return position, name, preparer.from_photo(a, b)
    image, mask = read_celeba_rgba(a, b)
    return position, name, preparer.from_crop(image, mask, name)
  except PrepareError as e:
    return position, name, str(e)
  except (ValueError, OSError) as e:  # anything else about this one input
    return position, name, f"{name}: {str(e).splitlines()[0]}"
