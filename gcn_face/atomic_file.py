"""Atomic output files: written under a temporary name in the same folder, then renamed, so a
killed job never leaves a truncated file where a finished one is expected."""

import contextlib
import json
import os


@contextlib.contextmanager
def atomic_path(path):
  """Yields a temporary path next to `path`; renames it to `path` if the block succeeds and
  removes it otherwise. Creates the parent folder."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  base, ext = os.path.splitext(os.path.basename(path))
  tmp = os.path.join(directory, f".{base}.tmp{os.getpid()}{ext}")
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_json(path, data):
  """Writes `data` as indented, key-sorted JSON atomically."""
  with atomic_path(path) as tmp, open(tmp, "w") as f:
    json.dump(data, f, indent=2, sort_keys=True)
    f.write("\n")


MAX_JSON_BYTES = 64 << 20  # manifests and run configs are kilobytes


def read_json(path, error, missing):
  """The JSON object in `path`; `error(message)` naming the file when it is missing (with the
  `missing` explanation), not a regular file, over MAX_JSON_BYTES, unreadable or not an
  object."""
  if os.path.lexists(path) and not os.path.isfile(path):
    raise error(f"{path}: not a regular file")
  if os.path.isfile(path) and os.path.getsize(path) > MAX_JSON_BYTES:
    raise error(f"{path}: {os.path.getsize(path)} bytes, too large for a manifest")
  try:
    with open(path) as f:
      data = json.load(f)
  except FileNotFoundError:
    raise error(f"{path}: {missing}") from None
  except (OSError, ValueError) as e:
    raise error(f"{path}: unreadable ({str(e).splitlines()[0]})") from None
  if not isinstance(data, dict):
    raise error(f"{path}: not a JSON object")
  return data
