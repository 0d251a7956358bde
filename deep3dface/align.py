"""5-point face alignment to Deep3D's 224 x 224 crop (SPEC 2.1), with its inverse.

    image = load_image("photo.jpg")                      # [H0, W0, 3] uint8 RGB
    points = load_landmarks_txt("photo.txt")             # [5, 2] x, y (y down)
    aligned = align_image(image, points)
    aligned.image                                        # [224, 224, 3] uint8 RGB
    aligned.transform.to_original(crop_points)           # paste results back

Coordinates: image pixels with the origin at the top-left pixel's centre, x
right, y down, unless a name says `_up` (Deep3D's y-up convention).
"""

import collections
import dataclasses
import os

import numpy as np
import PIL.Image
import PIL.ImageOps
import scipy.io

from deep3dface import constants

RESAMPLE = {"bicubic": PIL.Image.BICUBIC, "bilinear": PIL.Image.BILINEAR}
MIN_IMAGE_SIZE = 16  # pixels; smaller images cannot hold a detectable face
MIN_LANDMARK_SPREAD = 2.0  # pixels; 5 points closer together than this fit no face
# A photo larger is refused before it is decoded: a 9400 x 9400 PNG of 277 KB (under PIL's
# 89-megapixel bomb warning) held 4.9 GB for a minute. 40 MP: every phone's default output.
MAX_PHOTO_PIXELS = 40_000_000
MAX_TEXT_BYTES = 64 << 20  # landmark files and photo lists: a larger one is not ours


class InputError(ValueError):
  """An unusable input file (image or landmarks); the message is one line naming it."""


def load_image(path, max_pixels=MAX_PHOTO_PIXELS):
  """Reads an image as `[H, W, 3]` uint8 RGB.

  Applies the EXIF orientation, converts grayscale/palette/RGBA/16-bit images
  to 8-bit RGB (alpha is dropped), and raises InputError for missing, non-regular
  (a FIFO would block), unreadable, truncated, tiny or over-`max_pixels` files (checked
  from the header, before decoding).
  """
  check_regular_file(path)
  try:
    with PIL.Image.open(path) as img:
      width, height = img.size
      if max_pixels and width * height > max_pixels:
        raise InputError(f"{path}: image is {width}x{height} pixels "
                         f"({width * height / 1e6:.1f} MP), more than the limit of "
                         f"{max_pixels / 1e6:g} MP (--max_photo_megapixels)")
      img.load()
      img = PIL.ImageOps.exif_transpose(img)
      if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(img, np.float64)
        scale = 255.0 / 65535.0 if array.max() > 255 else 1.0
        img = PIL.Image.fromarray(np.clip(array * scale + 0.5, 0, 255).astype(np.uint8))
      rgb = np.asarray(img.convert("RGB"), np.uint8)
  except FileNotFoundError:
    raise InputError(f"{path}: no such file") from None
  except (OSError, SyntaxError, ValueError, PIL.Image.DecompressionBombError) as e:
    if isinstance(e, InputError):
      raise
    raise InputError(f"{path}: unreadable or truncated image ({str(e).splitlines()[0]})") from None
  if min(rgb.shape[:2]) < MIN_IMAGE_SIZE:
    raise InputError(f"{path}: image is {rgb.shape[1]}x{rgb.shape[0]} pixels, smaller than "
                     f"{MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE}")
  return rgb


def check_regular_file(path):
  """InputError unless `path` is an existing regular file (not a FIFO, device or folder)."""
  if not os.path.exists(path):
    raise InputError(f"{path}: no such file")
  if not os.path.isfile(path):
    raise InputError(f"{path}: not a regular file")


def read_text_lines(path, what):
  """The non-blank lines of a UTF-8 text file; InputError naming the file when it is missing,
  unreadable, not a regular file, or binary."""
  check_regular_file(path)
  if os.path.getsize(path) > MAX_TEXT_BYTES:
    raise InputError(f"{path}: {os.path.getsize(path)} bytes, more than {MAX_TEXT_BYTES >> 20} "
                     f"MiB; not {what}")
  try:
    with open(path, encoding="utf-8") as f:
      return [line for line in f if line.strip()]
  except UnicodeDecodeError:
    raise InputError(f"{path}: not a UTF-8 text file ({what} are text)") from None
  except OSError as e:
    raise InputError(f"{path}: cannot read {what} ({e.strerror})") from None


def load_landmarks_txt(path, count=5):
  """Reads Deep3D's landmark file: `count` lines of "x y" (pixels, y down) -> `[count, 2]`."""
  lines = [line.split() for line in read_text_lines(path, "landmarks")]
  if any("," in p for parts in lines for p in parts):
    raise InputError(f"{path}: values are separated by commas; expected {count} lines of "
                     "'x y' separated by spaces")
  if lines and all(len(parts) == 1 for parts in lines):
    raise InputError(f"{path}: one value per line ({len(lines)} lines); expected {count} lines "
                     "of 'x y' (two numbers per line)")
  if len(lines) != count or any(len(parts) < 2 for parts in lines):
    fields = sorted({len(parts) for parts in lines})
    raise InputError(f"{path}: expected {count} lines of 'x y', got {len(lines)} lines with "
                     f"{'/'.join(map(str, fields)) or 'no'} values")
  try:
    points = np.array([[float(p[0]), float(p[1])] for p in lines], np.float64)
  except ValueError:
    raise InputError(f"{path}: landmark values must be numbers") from None
  if not np.all(np.isfinite(points)):
    raise InputError(f"{path}: landmarks contain NaN or infinite values")
  return points


def standard_five_points(path=None):
  """Deep3D's 5 alignment targets `[5, 3]` (SPEC 2.1).

  Computed from similarity_Lm3D_all.mat (key `lm`, [68, 3]) when `path` is
  given, else the SPEC table's values (5 decimals).
  """
  if path is None:
    return np.array(constants.STANDARD_FIVE_POINTS, np.float64)
  try:
    lm = scipy.io.loadmat(path).get("lm")
  except FileNotFoundError:
    raise InputError(f"{path}: no such file") from None
  except (OSError, ValueError, TypeError, IndexError, EOFError, NotImplementedError,
          scipy.io.matlab.MatReadError) as e:
    raise InputError(f"{path}: not a readable .mat file ({str(e).splitlines()[0]})") from None
  if lm is None or np.shape(lm) != (68, 3) or not np.issubdtype(np.asarray(lm).dtype, np.number):
    raise InputError(f"{path}: expected key 'lm' with shape [68, 3]")
  if not np.all(np.isfinite(lm)):
    raise InputError(f"{path}: key 'lm' contains NaN or infinity")
  groups = constants.STD_LANDMARK_GROUPS_1BASED
  return np.stack([lm[[i - 1 for i in g]].astype(np.float64).mean(0) for g in groups])


def standard_crop_points(crop_size=constants.IMAGE_SIZE, standard=None):
  """Where alignment puts the 5 standard points in the crop: `[5, 2]` (x, y down).

  x = size/2 + u X, y = size - 1 - (size/2 + u Y) with u = 102 * size / 224
  pixels per model unit (the exact positions of a face whose landmarks fit the
  standard points perfectly).
  """
  standard = standard_five_points() if standard is None else np.asarray(standard, np.float64)
  unit = constants.ALIGN_SCALE * crop_size / constants.IMAGE_SIZE
  half = crop_size / 2.0
  return np.stack([half + unit * standard[:, 0], crop_size - 1 - (half + unit * standard[:, 1])],
                  axis=1)


def five_from_68(landmarks68):
  """5 alignment points `[5, 2]` from 68 detected landmarks `[68, 2]` (dlib layout)."""
  landmarks68 = np.asarray(landmarks68, np.float64)
  if landmarks68.shape != (68, 2):
    raise ValueError(f"landmarks must have shape [68, 2], got {landmarks68.shape}")
  return np.stack([landmarks68[list(g)].mean(0)
                   for g in constants.DETECTED_LANDMARK_GROUPS_0BASED])


def fit_scale_translation(points_up, standard):
  """Deep3D's "POS" fit (SPEC 2.1).

  Least squares for k in R^8 with x_i = k0 X + k1 Y + k2 Z + k3 and
  y_i = k4 X + k5 Y + k6 Z + k7.

  Args:
    points_up: `[5, 2]` image points with y up (y' = H0 - 1 - y).
    standard: `[5, 3]` 3-D targets.

  Returns:
    (t [2] = (k3, k7) in y-up pixels, s = (|k0..2| + |k4..6|) / 2 pixels per unit).
  """
  n = len(points_up)
  a = np.zeros((2 * n, 8))
  a[0::2, 0:3] = standard
  a[0::2, 3] = 1.0
  a[1::2, 4:7] = standard
  a[1::2, 7] = 1.0
  b = np.asarray(points_up, np.float64).reshape(-1)
  k, *_ = np.linalg.lstsq(a, b, rcond=None)
  s = (np.linalg.norm(k[0:3]) + np.linalg.norm(k[4:7])) / 2.0
  return np.array([k[3], k[7]]), s


@dataclasses.dataclass(frozen=True)
class AlignTransform:
  """Original image <-> aligned crop.

  The original is resized to `resized_size` = (w, h) and the crop's top-left
  pixel is `offset` = (left, top) of the resized image. `deep3d_params` is
  Deep3D's `[W0, H0, 102 / s, t_x, t_y]`.
  """
  original_size: tuple
  resized_size: tuple
  offset: tuple
  scale: float  # s of the POS fit, pixels per model unit
  translation: tuple  # t of the POS fit, y-up pixels
  crop_size: int = constants.IMAGE_SIZE

  @property
  def deep3d_params(self):
    w0, h0 = self.original_size
    return np.array([w0, h0, constants.ALIGN_SCALE / self.scale, *self.translation])

  def _ratio(self):
    return (np.array(self.resized_size, np.float64) / np.array(self.original_size, np.float64))

  def to_crop(self, points):
    """Original-image points `[..., 2]` (x, y down) -> crop points, exact resize geometry."""
    points = np.asarray(points, np.float64)
    return (points + 0.5) * self._ratio() - 0.5 - np.array(self.offset, np.float64)

  def to_original(self, points):
    """Crop points `[..., 2]` (x, y down) -> original-image points (inverse of to_crop)."""
    points = np.asarray(points, np.float64)
    return (points + np.array(self.offset, np.float64) + 0.5) / self._ratio() - 0.5


AlignedFace = collections.namedtuple("AlignedFace", ["image", "landmarks", "transform"])


def align_image(image, points, standard=None, resample="bicubic",
                crop_size=constants.IMAGE_SIZE):
  """Aligns a face to Deep3D's crop from 5 landmarks (SPEC 2.1).

  Args:
    image: uint8 `[H0, W0, 3]` RGB.
    points: `[5, 2]` (x, y down) pixels: left eye, right eye, nose tip, left
      and right mouth corner (image-left first).
    standard: `[5, 3]` targets (default: `standard_five_points()`).
    resample: "bicubic" (Deep3D) or "bilinear" (the GCN release's cropper).
    crop_size: output size (224 in Deep3D); one model unit = 102 * size / 224 px.

  Returns:
    AlignedFace(image uint8 [size, size, 3] RGB (zero outside the photo),
    landmarks [5, 2] in the crop computed as Deep3D does (x, y down; its y-up
    labels are size - 1 - y), transform AlignTransform).
  """
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
    raise ValueError(f"image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
  if resample not in RESAMPLE:
    raise ValueError(f"resample must be one of {sorted(RESAMPLE)}, got {resample!r}")
  points = np.asarray(points, np.float64)
  if points.shape != (5, 2) or not np.all(np.isfinite(points)):
    raise ValueError(f"points must be finite with shape [5, 2], got {points.shape}")
  spread = float(np.max(np.ptp(points, axis=0)))
  if spread < MIN_LANDMARK_SPREAD:
    raise ValueError(f"landmarks are degenerate: the 5 points span {spread:.2g} pixels "
                     f"(at least {MIN_LANDMARK_SPREAD} needed)")
  standard = standard_five_points() if standard is None else np.asarray(standard, np.float64)
  h0, w0 = image.shape[:2]
  unit = constants.ALIGN_SCALE * crop_size / constants.IMAGE_SIZE
  points_up = np.stack([points[:, 0], h0 - 1 - points[:, 1]], axis=1)
  t, s = fit_scale_translation(points_up, standard)
  if not (np.isfinite(s) and s > 0):
    raise ValueError("landmarks are degenerate: cannot fit a scale")
  w, h = int(w0 * unit / s), int(h0 * unit / s)
  if w < 1 or h < 1 or w > 50 * crop_size or h > 50 * crop_size:
    raise ValueError(f"landmarks give an unusable scale (resize {w0}x{h0} to {w}x{h})")
  left = int(w / 2 - crop_size / 2 + (t[0] - w0 / 2) * unit / s)
  top = int(h / 2 - crop_size / 2 + (h0 / 2 - t[1]) * unit / s)
  resized = PIL.Image.fromarray(image).resize((w, h), resample=RESAMPLE[resample])
  crop = np.asarray(resized.crop((left, top, left + crop_size, top + crop_size)), np.uint8)
  # Deep3D's landmark mapping, in y-up coordinates (with the unrounded crop
  # offset), then flipped to rows.
  lm_up = np.stack([points_up[:, 0] - t[0] + w0 / 2, points_up[:, 1] - t[1] + h0 / 2], 1)
  lm_up = lm_up * unit / s - np.array([w / 2 - crop_size / 2, h / 2 - crop_size / 2])
  lm = np.stack([lm_up[:, 0], crop_size - 1 - lm_up[:, 1]], axis=1)
  transform = AlignTransform(original_size=(w0, h0), resized_size=(w, h), offset=(left, top),
                             scale=float(s), translation=(float(t[0]), float(t[1])),
                             crop_size=crop_size)
  return AlignedFace(crop, lm, transform)
