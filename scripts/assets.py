"""The licensed assets under checkpoints/ (checkpoints/README.md): where each belongs, where
to obtain it and its checksum, for one message that lists every missing file."""

import collections
import os

from scripts.common import user_path

Asset = collections.namedtuple("Asset", ["path", "what", "source", "sha256"])
NOT_RECORDED = "SHA-256 not recorded (unavailable to this project; loaders check the content)"

ASSETS = {
    "bfm": Asset("checkpoints/BFM/BFM_model_front.mat", "BFM09 front-face model",
                 "convert 01_MorphableModel.mat (https://faces.dmi.unibas.ch/bfm/) and "
                 "Exp_Pca.bin (Deep3DFaceReconstruction README) with python -m "
                 "scripts.convert_bfm", NOT_RECORDED),
    "rnet": Asset("checkpoints/FaceReconModel.pb", "Deep3D R-Net frozen graph",
                  "microsoft/Deep3DFaceReconstruction release", NOT_RECORDED),
    "facenet": Asset("checkpoints/facenet/20180402-114759.pb", "FaceNet 20180402-114759",
                     "davidsandberg/facenet README", NOT_RECORDED),
    "gcn": Asset("checkpoints/bfm09_face_normal", "trained GCN texture refinement",
                 "python -m scripts.train (the authors published no weights)",
                 "your own training run"),
}


def present(key, path=None):
  return os.path.exists(user_path(path or ASSETS[key].path))


def flag_path(flag, value, key):
  """The path an asset flag names: `value` (empty: none), else the asset's default when it is
  present (None otherwise). ValueError naming the flag when `value` does not exist."""
  if value is None:
    return ASSETS[key].path if present(key) else None
  if value and not os.path.exists(user_path(value)):
    raise ValueError(f"--{flag}={value}: not found. {describe([key])}")
  return value or None


def describe(keys):
  """One line listing assets: path (what): where to obtain it; checksum."""
  return "; ".join(f"{ASSETS[k].path} ({ASSETS[k].what}): {ASSETS[k].source}; "
                   f"{ASSETS[k].sha256}" for k in keys)
