"""viewer.html: one self-contained page per face that opens from file:// with no server and no
network: three.js (npm `three`, pinned in package.json, inlined with its licence header), its
OrbitControls, the page script gcn_face/viewer.js and the mesh as base64 data. Drag to orbit;
buttons (keys 1-9, or `viewer.html#<name>`) switch the per-vertex colour sets.

three.js 0.147.0 is the last release that ships non-module builds (build/three.min.js and
examples/js/), which a file:// page can inline without a module loader.
"""

import base64
import html
import json
import os

import numpy as np

from gcn_face import atomic_file

THREE_DIR_ENV = "GCN_FACE_THREE_DIR"  # a folder holding npm's three package, if elsewhere
THREE_FILES = ("build/three.min.js", "examples/js/controls/OrbitControls.js")
BACKGROUND = "#20242a"  # the page and scene background
FOV_Y_DEGREES = 30.0
AMBIENT = 0.35  # share of the light that is ambient; the rest is a head light
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PAGE_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "viewer.js")


class ViewerUnavailable(RuntimeError):
  """three.js is not installed (npm ci in the project folder installs it)."""


def three_dir():
  """The folder of npm's `three` package: $GCN_FACE_THREE_DIR, else node_modules/three of the
  project; raises ViewerUnavailable naming what is missing."""
  directory = os.environ.get(THREE_DIR_ENV) or os.path.join(_ROOT, "node_modules", "three")
  missing = [f for f in THREE_FILES if not os.path.isfile(os.path.join(directory, f))]
  if missing:
    raise ViewerUnavailable(f"{directory}: three.js is not installed ({missing[0]} missing; "
                            f"run `npm ci` in {_ROOT}, or set {THREE_DIR_ENV})")
  return directory


def _script(text):
  return "<script>\n" + text.replace("</script", "<\\/script") + "\n</script>"


def _b64(array, dtype):
  return base64.b64encode(np.ascontiguousarray(array, dtype).tobytes()).decode("ascii")


def page(vertices, triangles, colors, labels=None, title="face", photo_png=None):
  """The viewer's HTML text.

  Args:
    vertices: `[V, 3]` positions (any unit; the camera frames the mesh).
    triangles: `[T, 3]` 0-based.
    colors: {name: `[V, 3]` sRGB colours in [0, 255]}, the first shown at load.
    labels: {name: button label} (default: the names).
    title: the page title.
    photo_png: optional PNG bytes shown in a corner (the aligned photo).

  Raises:
    ViewerUnavailable: three.js is not installed.
    ValueError: the arrays do not match.
  """
  vertices = np.asarray(vertices, np.float32).reshape(-1, 3)
  triangles = np.asarray(triangles, np.int64).reshape(-1, 3)
  if len(triangles) and (triangles.min() < 0 or triangles.max() >= len(vertices)):
    raise ValueError(f"viewer {title}: triangle index out of range 0..{len(vertices) - 1}")
  encoded = {}
  for name, rgb in colors.items():
    rgb = np.asarray(rgb, np.float64).reshape(-1, 3)
    if len(rgb) != len(vertices):
      raise ValueError(f"viewer {title}: colour set {name!r} has {len(rgb)} rows for "
                       f"{len(vertices)} vertices")
    encoded[name] = _b64(np.clip(np.round(rgb), 0, 255), np.uint8)
  directory = three_dir()
  libraries = []
  for name in THREE_FILES:
    with open(os.path.join(directory, name), encoding="utf-8") as f:
      libraries.append(_script(f.read()))
  with open(_PAGE_SCRIPT, encoding="utf-8") as f:
    page_script = f.read()
  data = {"positions": _b64(vertices, np.float32), "triangles": _b64(triangles, np.uint32),
          "colors": encoded, "order": list(colors),
          "labels": {n: (labels or {}).get(n, n) for n in colors},
          "background": BACKGROUND, "fov_y": FOV_Y_DEGREES, "ambient": AMBIENT}
  photo = ""
  if photo_png is not None:
    photo = ('<img id="photo" alt="photo" src="data:image/png;base64,'
             + base64.b64encode(photo_png).decode("ascii") + '">')
  style = (f"html,body{{margin:0;height:100%;overflow:hidden;background:{BACKGROUND};"
           "font:13px sans-serif;color:#ddd}#view{position:absolute;inset:0}"
           "#bar{position:absolute;top:8px;left:8px}#buttons button{margin-right:4px;"
           "background:#333a44;color:#ddd;border:1px solid #556;padding:4px 8px;"
           "border-radius:3px;cursor:pointer}#buttons button.on{background:#6a8caf;"
           "color:#fff}#photo{position:absolute;right:8px;top:8px;width:112px;"
           "border:1px solid #556}#help{margin-top:6px;opacity:.7}")
  return "\n".join([
      "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
      f"<title>{html.escape(title)}</title>", f"<style>{style}</style></head><body>",
      '<div id="view"></div><div id="bar"><div id="buttons"></div>',
      '<div id="help">drag: turn · wheel: zoom · right-drag: pan</div></div>', photo,
      *libraries, _script("window.GCN_FACE = " + json.dumps(data) + ";"), _script(page_script),
      "</body></html>"])


def write(path, vertices, triangles, colors, labels=None, title="face", photo_png=None):
  """Writes `page(...)` to `path` atomically."""
  text = page(vertices, triangles, colors, labels, title, photo_png)
  with atomic_file.atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
