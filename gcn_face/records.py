"""The training-data format: sharded TFRecords of aligned faces plus a JSON manifest.

One `tf.train.Example` per face (prepare_data.py for photos, make_synthetic.py
for the synthetic default; the trainer cannot tell them apart):

| feature | type | content |
| --- | --- | --- |
| name | bytes | source file name or synthetic id |
| image | bytes | PNG, RGB uint8 224 x 224, Deep3D's aligned crop |
| mask | bytes | PNG, uint8 224 x 224, 255 = visible skin (the original's alpha) |
| coeff | float [257] | Deep3D coefficients of the face (R-Net or ground truth) |
| landmarks | float [10] | Deep3D's 5 points in the crop (x, y down) |
| landmarks68 | float [136] | 68 points in the crop (x, y down); optional |
| albedo | bytes | true per-vertex albedo, uint8 [N, 3] raw; synthetic data only |

Files: `<dir>/<prefix>-<shard:05d>.tfrecord` (GZIP) and `<dir>/manifest.json`
with the count per shard, the flags that made them, versions and the skipped
inputs. A shard is written to a temporary name and renamed when complete, so a
killed run leaves only whole shards, and `ShardWriter` continues after them.
"""

import os
import stat
import time

import numpy as np
import tensorflow as tf

from deep3dface import constants
from gcn_face import atomic_file

MANIFEST = "manifest.json"
COMPRESSION = "GZIP"
FORMAT_VERSION = 1
IMAGE_SIZE = constants.IMAGE_SIZE


class DatasetError(ValueError):
  """A dataset folder that cannot be read; one line naming it and the problem."""


def _bytes(value):
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _floats(values):
  return tf.train.Feature(float_list=tf.train.FloatList(value=np.asarray(values).ravel()))


def encode_example(name, image, mask, coeff, landmarks, landmarks68=None, albedo=None):
  """Serialises one face.

  Args:
    name: str.
    image: uint8 `[224, 224, 3]` RGB.
    mask: uint8 `[224, 224]`, 255 = visible skin (or bool).
    coeff: float `[257]`.
    landmarks: float `[5, 2]` (x, y down) in the crop.
    landmarks68: optional float `[68, 2]`.
    albedo: optional uint8 `[N, 3]` true albedo.
  """
  image = np.asarray(image)
  mask = np.asarray(mask)
  if image.shape != (IMAGE_SIZE, IMAGE_SIZE, 3) or image.dtype != np.uint8:
    raise ValueError(f"{name}: image must be uint8 [224, 224, 3], got {image.dtype} {image.shape}")
  if mask.dtype == bool:
    mask = mask.astype(np.uint8) * 255
  if mask.shape != (IMAGE_SIZE, IMAGE_SIZE) or mask.dtype != np.uint8:
    raise ValueError(f"{name}: mask must be uint8 [224, 224], got {mask.dtype} {mask.shape}")
  coeff = np.asarray(coeff, np.float32)
  landmarks = np.asarray(landmarks, np.float32)
  if coeff.shape != (constants.COEFF_DIM,) or landmarks.shape != (5, 2):
    raise ValueError(f"{name}: coeff must be [257] and landmarks [5, 2], got {coeff.shape} and "
                     f"{landmarks.shape}")
  if not (np.all(np.isfinite(coeff)) and np.all(np.isfinite(landmarks))):
    raise ValueError(f"{name}: coefficients or landmarks contain NaN or infinity")
  feature = {
      "name": _bytes(name.encode()),
      "image": _bytes(tf.io.encode_png(image).numpy()),
      "mask": _bytes(tf.io.encode_png(mask[..., None]).numpy()),
      "coeff": _floats(coeff),
      "landmarks": _floats(landmarks),
  }
  if landmarks68 is not None:
    feature["landmarks68"] = _floats(np.asarray(landmarks68, np.float32).reshape(68, 2))
  if albedo is not None:
    albedo = np.asarray(albedo)
    if albedo.dtype != np.uint8 or albedo.ndim != 2 or albedo.shape[1] != 3:
      raise ValueError(f"{name}: albedo must be uint8 [N, 3], got {albedo.dtype} {albedo.shape}")
    feature["albedo"] = _bytes(albedo.tobytes())
  return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _spec(has_landmarks68, has_albedo):
  spec = {
      "name": tf.io.FixedLenFeature([], tf.string),
      "image": tf.io.FixedLenFeature([], tf.string),
      "mask": tf.io.FixedLenFeature([], tf.string),
      "coeff": tf.io.FixedLenFeature([constants.COEFF_DIM], tf.float32),
      "landmarks": tf.io.FixedLenFeature([10], tf.float32),
  }
  if has_landmarks68:
    spec["landmarks68"] = tf.io.FixedLenFeature([136], tf.float32)
  if has_albedo:
    spec["albedo"] = tf.io.FixedLenFeature([], tf.string)
  return spec


def decode_example(serialized, has_landmarks68=False, has_albedo=False):
  """One serialised example -> dict of tensors.

  Returns:
    name (string), image float32 `[224, 224, 3]` in [0, 255], mask float32
    `[224, 224]` in {0, 1}, coeff `[257]`, landmarks `[5, 2]`, and when
    present landmarks68 `[68, 2]`, albedo float32 `[N, 3]` in [0, 255].
  """
  parsed = tf.io.parse_single_example(serialized, _spec(has_landmarks68, has_albedo))
  image = tf.ensure_shape(tf.io.decode_png(parsed["image"], channels=3),
                          [IMAGE_SIZE, IMAGE_SIZE, 3])
  mask = tf.ensure_shape(tf.io.decode_png(parsed["mask"], channels=1),
                         [IMAGE_SIZE, IMAGE_SIZE, 1])
  out = {
      "name": parsed["name"],
      "image": tf.cast(image, tf.float32),
      "mask": tf.cast(mask[..., 0] > 127, tf.float32),
      "coeff": parsed["coeff"],
      "landmarks": tf.reshape(parsed["landmarks"], [5, 2]),
  }
  if has_landmarks68:
    out["landmarks68"] = tf.reshape(parsed["landmarks68"], [68, 2])
  if has_albedo:
    out["albedo"] = tf.cast(tf.reshape(tf.io.decode_raw(parsed["albedo"], tf.uint8), [-1, 3]),
                            tf.float32)
  return out


def check_output_folder(directory):
  """Creates the dataset folder; DatasetError naming it when it is a file or cannot be made."""
  if os.path.lexists(directory) and not os.path.isdir(directory):
    raise DatasetError(f"{directory}: exists and is not a folder")
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError as e:
    raise DatasetError(f"{directory}: cannot create the dataset folder ({e.strerror})") from None


def shard_path(directory, prefix, index):
  return os.path.join(directory, f"{prefix}-{index:05d}.tfrecord")


def read_manifest(directory):
  """The manifest of a dataset folder; DatasetError when missing, corrupt or malformed (every
  split an object with a list of shards, each a plain file name in the folder and a count)."""
  path = os.path.join(directory, MANIFEST)
  manifest = atomic_file.read_json(
      path, DatasetError, "no manifest; not a dataset folder (make one with "
      "scripts/make_synthetic.py or scripts/prepare_data.py)")
  if manifest.get("format_version") != FORMAT_VERSION or "splits" not in manifest:
    raise DatasetError(f"{path}: not a format-{FORMAT_VERSION} manifest")
  if not isinstance(manifest["splits"], dict):
    raise DatasetError(f"{path}: 'splits' must be an object of split name -> entry, got "
                       f"{type(manifest['splits']).__name__}")
  for split, entry in manifest["splits"].items():
    _check_split_entry(path, split, entry)
  if not isinstance(manifest.setdefault("skipped", []), list):
    raise DatasetError(f"{path}: 'skipped' must be a list")
  return manifest


def _is_count(value):
  return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_split_entry(path, split, entry):
  where = f"{path}: split {split!r}"
  if not isinstance(entry, dict) or not isinstance(entry.get("shards"), list):
    raise DatasetError(f"{where} must be an object with a list of 'shards'")
  if not _is_count(entry.get("per_shard", 0)) or entry.get("per_shard") == 0:
    raise DatasetError(f"{where}: 'per_shard' must be a positive integer, got "
                       f"{entry.get('per_shard')!r}")
  for i, shard in enumerate(entry["shards"]):
    if not isinstance(shard, dict):
      raise DatasetError(f"{where}: shard {i} must be an object with 'file' and 'count'")
    name, count = shard.get("file"), shard.get("count")
    if (not isinstance(name, str) or not name or os.path.basename(name) != name or
        name in (".", "..") or "\\" in name):
      raise DatasetError(f"{where}: shard {i} file {name!r} is not a file name inside the "
                         "dataset folder")
    if not _is_count(count):
      raise DatasetError(f"{where}: shard {i} ({name}) count must be a non-negative integer, "
                         f"got {count!r}")


class ShardWriter:
  """Writes examples into fixed-size shards of one split, resumably.

  Examples are numbered; shard k holds examples [k * per_shard, (k + 1) *
  per_shard). On start, complete shards listed in the manifest are kept and
  `next_index` says where to continue; each shard is renamed into place when
  full (or at `close`) and the manifest is rewritten after every shard.

  Args:
    directory: output folder.
    split: "train", "val" or "test" (the shard prefix).
    per_shard: examples per shard.
    info: JSON-able dict stored in the manifest (flags, versions, model).
  """

  def __init__(self, directory, split, per_shard, info):
    check_output_folder(directory)
    self.directory, self.split, self.per_shard = directory, split, int(per_shard)
    path = os.path.join(directory, MANIFEST)
    self.manifest = read_manifest(directory) if os.path.exists(path) else {
        "format_version": FORMAT_VERSION, "splits": {}, "info": info, "skipped": []}
    entry = self.manifest["splits"].setdefault(split, {"shards": [], "per_shard": per_shard})
    if entry["per_shard"] != per_shard:
      raise DatasetError(f"{directory}: existing {split} shards hold {entry['per_shard']} "
                         f"examples each, not {per_shard}; use a new folder")
    # Keep the complete shards that are still on disk, in order.
    kept = []
    for shard in entry["shards"]:
      if shard["count"] == per_shard and os.path.isfile(os.path.join(directory, shard["file"])):
        kept.append(shard)
      else:
        break
    entry["shards"] = kept
    self.entry = entry
    self.next_index = len(kept) * per_shard
    # How many inputs the kept shards consumed (inputs may be skipped), and only their skips.
    self.resume_position = kept[-1].get("input_end", self.next_index) if kept else 0
    self.manifest["skipped"] = [s for s in self.manifest["skipped"] if s.get("split") != split
                                or (s.get("position") or 0) < self.resume_position]
    self._writer, self._count, self._tmp, self._position = None, 0, None, self.resume_position
    self.manifest["info"] = info

  def skip(self, name, reason, position=None):
    """Records an input that produced no example (`position`: its input index)."""
    self.manifest["skipped"].append({"name": name, "reason": reason, "split": self.split,
                                     "position": position})
    if position is not None:
      self._position = position + 1

  def write(self, serialized, position=None):
    """Appends an example; `position` is the input index it came from (default: its own
    number), recorded so a resumed run knows which inputs the kept shards consumed."""
    self._position = position + 1 if position is not None else self.next_index + 1
    if self._writer is None:
      index = len(self.entry["shards"])
      self._tmp = shard_path(self.directory, self.split, index) + ".partial"
      self._writer = tf.io.TFRecordWriter(self._tmp, options=COMPRESSION)
    self._writer.write(serialized)
    self._count += 1
    self.next_index += 1
    if self._count == self.per_shard:
      self._finish()

  def _finish(self):
    self._writer.close()
    index = len(self.entry["shards"])
    final = shard_path(self.directory, self.split, index)
    os.replace(self._tmp, final)
    self.entry["shards"].append({"file": os.path.basename(final), "count": self._count,
                                 "input_end": self._position})
    self._writer, self._count = None, 0
    self.save_manifest()

  def save_manifest(self):
    self.manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    self.entry["count"] = sum(s["count"] for s in self.entry["shards"])
    atomic_file.write_json(os.path.join(self.directory, MANIFEST), self.manifest)

  def close(self):
    if self._writer is not None:
      self._finish()
    self.save_manifest()


def split_files(directory, split):
  """(shard paths, example count, manifest) of a split; DatasetError if absent, incomplete or
  a shard is not a regular file in the folder (a FIFO, a device, a link out of it)."""
  manifest = read_manifest(directory)
  entry = manifest["splits"].get(split)
  if not entry or not entry["shards"]:
    raise DatasetError(f"{directory}: no '{split}' split in the manifest "
                       f"(has {sorted(manifest['splits'])})")
  files = [os.path.join(directory, s["file"]) for s in entry["shards"]]
  folder = os.path.realpath(directory)
  for f in files:
    if not os.path.lexists(f):
      raise DatasetError(f"{f}: shard listed in the manifest is missing")
    if os.path.dirname(os.path.realpath(f)) != folder:
      raise DatasetError(f"{f}: shard is a link out of the dataset folder")
    if not stat.S_ISREG(os.stat(f).st_mode):
      raise DatasetError(f"{f}: shard is not a regular file")
  return files, sum(s["count"] for s in entry["shards"]), manifest


def shard_counts(files):
  """[(path, records or None, error or None)] reading each shard to its end: what a damaged
  or short shard really holds (the trainer's diagnosis when a split fails to read)."""
  out = []
  for path in files:
    count = 0
    try:
      for _ in tf.data.TFRecordDataset(path, compression_type=COMPRESSION):
        count += 1
      out.append((path, count, None))
    except tf.errors.OpError as e:
      out.append((path, None, (e.message or str(e)).splitlines()[0]))
  return out


def diagnose_split(directory, split):
  """One line naming the first shard of a split that is unreadable or holds another number
  of records than the manifest lists (None if every shard reads as listed)."""
  files, _, manifest = split_files(directory, split)
  listed = [s["count"] for s in manifest["splits"][split]["shards"]]
  for (path, count, error), expected in zip(shard_counts(files), listed):
    if error is not None:
      return f"{path}: damaged shard, not a GZIP TFRecord file of faces ({error})"
    if count != expected:
      return f"{path}: shard holds {count} records, the manifest lists {expected}"
  return None


def raw_dataset(directory, split):
  """The serialised examples of a split in file order."""
  files, _, _ = split_files(directory, split)
  return tf.data.TFRecordDataset(files, compression_type=COMPRESSION)


def decode(dataset_, has_landmarks68=False, has_albedo=False):
  """Maps `decode_example` over a dataset of serialised examples (order kept)."""
  return dataset_.map(lambda s: decode_example(s, has_landmarks68, has_albedo),
                      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def dataset(directory, split, has_landmarks68=False, has_albedo=False):
  """The examples of a split in file order (decoded, unbatched)."""
  return decode(raw_dataset(directory, split), has_landmarks68, has_albedo)
