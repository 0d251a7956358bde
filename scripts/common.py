"""Helpers shared by the command-line programs."""

import os


def user_path(path):
  """Paths given to `bazel run` are relative to the workspace, not the runfiles tree."""
  base = os.environ.get("BUILD_WORKSPACE_DIRECTORY", "")
  return path if os.path.isabs(path) or not base else os.path.join(base, path)


def fail(message):
  """Ends the program with one line on stderr and exit status 1 (no usage dump, no trace)."""
  raise SystemExit(f"error: {message}")


class Progress:
  """Logs `done/total`, rate and ETA through absl at most every `interval` seconds."""

  def __init__(self, total, what, interval=5.0, done=0):
    import time  # pylint: disable=g-import-not-at-top
    self._time = time.monotonic
    self.total, self.what, self.interval = total, what, interval
    self.start_done = self.done = done
    self.start = self.last = self._time()

  def update(self, count=1, force=False):
    from absl import logging  # pylint: disable=g-import-not-at-top
    self.done += count
    now = self._time()
    if not force and now - self.last < self.interval and self.done < self.total:
      return
    self.last = now
    rate = (self.done - self.start_done) / max(now - self.start, 1e-9)
    eta = (self.total - self.done) / rate if rate > 0 else float("inf")
    logging.info("%s: %d/%d (%.1f/s, ETA %s)", self.what, self.done, self.total, rate,
                 format_seconds(eta))


def format_seconds(seconds):
  if seconds == float("inf"):
    return "unknown"
  seconds = int(round(seconds))
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def load_face_model(spec):
  """A MorphableModel from 'synthetic' (grid), 'synthetic_bfm' (real BFM topology from
  ../shared or checkpoints/BFM/facemodel_info.mat) or a BFM_model_front.mat path."""
  from deep3dface import bfm, synthetic  # pylint: disable=g-import-not-at-top
  if spec == "synthetic":
    return synthetic.synthetic_model()
  if spec == "synthetic_bfm":
    info = user_path("checkpoints/BFM/facemodel_info.mat")
    if not os.path.isfile(info):
      raise ValueError(f"{info}: needed for --model=synthetic_bfm (Deep3D's BFM/ folder)")
    return synthetic.synthetic_model("bfm", info)
  return bfm.load_model(user_path(spec))
