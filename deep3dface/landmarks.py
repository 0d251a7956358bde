"""Face detection and 68/5-point landmarks with dlib (the GCN release's test-time detector).

    detector = LandmarkDetector()                    # HOG detector + 68-point predictor
    faces = detector.detect(image)                   # list of DetectedFace, largest first
    five = detector.five_points(image, path)         # [5, 2] for align.align_image

dlib's models ship on PyPI in `face_recognition_models`; nothing is
downloaded. Landmark coordinates are image pixels (x right, y down, origin at
the top-left pixel's centre), as in `deep3dface.align`.
"""

import collections
import os

import numpy as np
import PIL.Image

from deep3dface import align

# Photos larger are searched for faces downscaled to this many pixels (2000 x 2000).
DETECTION_MAX_PIXELS = 4_000_000
HOG_UPSAMPLE = 1  # the release's dlib.get_frontal_face_detector()(img, 1)
SELECT_LARGEST = "largest"
SELECT_ALL = "all"

DetectedFace = collections.namedtuple("DetectedFace", ["box", "score", "landmarks", "five"])
DetectedFace.__doc__ = """One face.

box: (left, top, right, bottom) pixels of dlib's detection rectangle.
score: HOG detector confidence (higher is more certain).
landmarks: float64 `[68, 2]` (x, y down), iBUG 68-point order.
five: float64 `[5, 2]` alignment points (eye centres, nose tip, mouth corners).
"""


class NoFaceError(align.InputError):
  """No face was found in an image; the message names the image."""


def _import_dlib():
  try:
    import dlib  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ImportError("dlib is not installed; run `pip install -r requirements.txt` "
                      "(it provides dlib-bin and face_recognition_models)") from None
  return dlib


def dlib_model_file(locator):
  """A model file shipped by face_recognition_models, by its locator function's name."""
  try:
    import face_recognition_models  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ImportError("face_recognition_models is not installed; run "
                      "`pip install -r requirements.txt`") from None
  return getattr(face_recognition_models, locator)()


def default_predictor_path():
  """Path of dlib's shape_predictor_68_face_landmarks.dat from face_recognition_models."""
  return dlib_model_file("pose_predictor_model_location")


class LandmarkDetector:
  """dlib's HOG face detector and 68-point shape predictor.

  Args:
    predictor_path: a dlib shape-predictor `.dat` with 68 parts (default: the
      one in face_recognition_models).
    upsample: how many times the detector upsamples the image (1 finds faces
      down to ~40 px, as the release).
    select: "largest" keeps the face with the largest box (the release keeps
      dlib's first), "all" keeps every face, largest first.
  """

  def __init__(self, predictor_path=None, upsample=HOG_UPSAMPLE, select=SELECT_LARGEST):
    if select not in (SELECT_LARGEST, SELECT_ALL):
      raise ValueError(f"select must be '{SELECT_LARGEST}' or '{SELECT_ALL}', got {select!r}")
    if int(upsample) != upsample or upsample < 0:
      raise ValueError(f"upsample must be a non-negative integer, got {upsample!r}")
    dlib = _import_dlib()
    path = predictor_path or default_predictor_path()
    if not os.path.isfile(path):
      raise FileNotFoundError(f"{path}: shape predictor file not found")
    try:
      self._predictor = dlib.shape_predictor(path)
    except RuntimeError as e:
      raise align.InputError(f"{path}: not a valid dlib shape predictor "
                             f"({str(e).strip().splitlines()[0]})") from None
    self._detector = dlib.get_frontal_face_detector()
    self._dlib = dlib
    self._upsample = int(upsample)
    self._select = select
    self.predictor_path = path

  def detect(self, image):
    """Finds faces and their landmarks.

    Args:
      image: uint8 `[H, W, 3]` RGB (as from `align.load_image`).

    Returns:
      list of DetectedFace, largest box first; one at most with
      select="largest"; empty when no face is found.
    """
    image = np.ascontiguousarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
      raise ValueError(f"image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    rects, scores = self._detect_boxes(image)
    order = sorted(range(len(rects)), key=lambda i: -rects[i].area())
    if self._select == SELECT_LARGEST:
      order = order[:1]
    faces = []
    for i in order:
      rect = rects[i]
      shape = self._predictor(image, rect)
      if shape.num_parts != 68:
        raise ValueError(f"{self.predictor_path}: predictor gives {shape.num_parts} points, "
                         "expected 68")
      points = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
      faces.append(DetectedFace(box=(rect.left(), rect.top(), rect.right(), rect.bottom()),
                                score=float(scores[i]), landmarks=points,
                                five=align.five_from_68(points)))
    return faces

  def _detect_boxes(self, image):
    """dlib's HOG boxes (rectangles in `image`'s pixels) and scores; a photo above
    DETECTION_MAX_PIXELS is searched downscaled (HOG's time and memory grow with the pixels
    times 4^upsample), its boxes scaled back for the predictor at full resolution."""
    height, width = image.shape[:2]
    scale = min(1.0, (DETECTION_MAX_PIXELS / float(height * width)) ** 0.5)
    if scale == 1.0:
      rects, scores, _ = self._detector.run(image, self._upsample)
      return rects, scores
    small = np.asarray(PIL.Image.fromarray(image).resize(
        (max(1, round(width * scale)), max(1, round(height * scale))), PIL.Image.BILINEAR))
    rects, scores, _ = self._detector.run(small, self._upsample)
    back = [self._dlib.rectangle(int(round(r.left() / scale)), int(round(r.top() / scale)),
                                 int(round(r.right() / scale)), int(round(r.bottom() / scale)))
            for r in rects]
    return back, scores

  def five_points(self, image, name="image"):
    """The largest face's 5 alignment points `[5, 2]`; NoFaceError naming `name` if none."""
    faces = self.detect(image)
    if not faces:
      raise NoFaceError(f"{name}: no face found (dlib HOG detector, upsample {self._upsample})")
    return faces[0].five
