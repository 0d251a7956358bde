"""The files people open: OBJ colours, glTF (Khronos validator and trimesh), viewer.html in
headless Chromium, turntable.gif."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import trimesh

from gcn_face import mesh_io, reconstruction, turntable, viewer
from tests.scripts_run import ROOT

NODE = shutil.which("node")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
VALIDATOR = os.path.join(ROOT, "node_modules", "gltf-validator")


def _dome(n=24):
  """A hemisphere facing +z: vertices `[V, 3]`, triangles wound counter-clockwise from
  outside, and a colour ramp left to right."""
  theta, phi = np.meshgrid(np.linspace(-1.3, 1.3, n), np.linspace(-1.3, 1.3, n))
  vertices = np.stack([np.sin(theta) * np.cos(phi), np.sin(phi), np.cos(theta) * np.cos(phi)],
                      -1).reshape(-1, 3)
  ids = np.arange(n * n).reshape(n, n)
  a, b, c, d = ids[:-1, :-1], ids[:-1, 1:], ids[1:, :-1], ids[1:, 1:]
  triangles = np.concatenate([np.stack([a, b, d], -1).reshape(-1, 3),
                              np.stack([a, d, c], -1).reshape(-1, 3)])
  ramp = (vertices[:, 0] + 1.0) / 2.0
  colors = np.stack([ramp, 0.5 + 0 * ramp, 1.0 - ramp], -1) * 255.0
  return vertices, triangles, colors


def test_obj_colours_are_floats_trimesh_reads_as_the_ply(tmp_path):
  vertices, triangles, colors = _dome()
  mesh_io.write_obj(tmp_path / "m.obj", vertices, triangles,
                    reconstruction.obj_colors(colors), vertices)
  mesh_io.write_ply(tmp_path / "m.ply", vertices, triangles, colors, vertices)
  obj = trimesh.load(str(tmp_path / "m.obj"), process=False)
  ply = trimesh.load(str(tmp_path / "m.ply"), process=False)
  assert obj.visual.kind == "vertex"
  np.testing.assert_allclose(obj.visual.vertex_colors[:, :3].astype(float),
                             ply.visual.vertex_colors[:, :3].astype(float), atol=1)
  assert ply.visual.vertex_colors[:, 0].std() > 50  # not all white
  line = next(l for l in (tmp_path / "m.obj").read_text().splitlines() if l.startswith("v "))
  assert all(0.0 <= float(v) <= 1.0 for v in line.split()[4:7])


def test_srgb_to_linear_matches_the_standard():
  values = np.array([0.0, 0.04045, 0.5, 1.0])
  expected = [0.0, 0.04045 / 12.92, ((0.5 + 0.055) / 1.055) ** 2.4, 1.0]
  np.testing.assert_allclose(mesh_io.srgb_to_linear(values), expected, rtol=1e-12)


def _glb(tmp_path):
  vertices, triangles, colors = _dome()
  path = tmp_path / "mesh.glb"
  mesh_io.write_glb(path, vertices * 0.1, triangles,
                    {"coarse": colors / 255.0, "fine": colors[:, ::-1] / 255.0},
                    normals=vertices, spacing=0.25)
  return path, vertices, triangles, colors


def test_glb_loads_in_trimesh(tmp_path):
  path, vertices, triangles, colors = _glb(tmp_path)
  scene = trimesh.load(str(path))
  assert list(scene.geometry) == ["coarse", "fine"]
  coarse = scene.geometry["coarse"]
  np.testing.assert_allclose(coarse.vertices, vertices * 0.1, atol=1e-6)
  np.testing.assert_array_equal(coarse.faces, triangles)
  np.testing.assert_allclose(coarse.visual.vertex_attributes["color"],
                             mesh_io.srgb_to_linear(colors / 255.0), atol=1e-6)
  np.testing.assert_allclose(scene.geometry["fine"].visual.vertex_attributes["color"],
                             mesh_io.srgb_to_linear(colors[:, ::-1] / 255.0), atol=1e-6)
  assert scene.graph["fine"][0][0, 3] == pytest.approx(0.25)
  # One copy of the shared positions, normals and triangles: the file is their size plus one
  # colour set per mesh and the JSON.
  shared = len(vertices) * 12 * 2 + triangles.size * 4
  assert os.path.getsize(path) < shared + 2 * len(vertices) * 12 + 4096


@pytest.mark.parametrize("bad, message", [
    ({"faces": [[0, 1, 10 ** 6]]}, "face index out of range"),
    ({"colors": {"a": np.zeros((3, 3))}}, "has 3 rows"),
    ({"colors": {}}, "at least one colour set"),
    ({"vertices": np.full((4, 3), np.nan)}, "NaN"),
])
def test_glb_rejects_bad_input(tmp_path, bad, message):
  args = {"vertices": np.eye(4, 3), "faces": [[0, 1, 2]], "colors": {"a": np.ones((4, 3))}}
  args.update(bad)
  with pytest.raises(ValueError, match=message):
    mesh_io.write_glb(tmp_path / "x.glb", args["vertices"], args["faces"], args["colors"])


@pytest.mark.skipif(not NODE or not os.path.isdir(VALIDATOR),
                    reason="needs node and `npm ci` (gltf-validator; setup.sh installs it)")
def test_glb_passes_the_khronos_validator(tmp_path):
  path, *_ = _glb(tmp_path)
  broken = tmp_path / "broken.glb"
  data = bytearray(path.read_bytes())
  data[12 + 8:12 + 8 + 10] = b"{\"asset\":0"  # a damaged JSON chunk must be caught
  broken.write_bytes(bytes(data))
  result = subprocess.run([NODE, os.path.join(ROOT, "tests", "gltf_validate.js"), str(path),
                           str(broken)], capture_output=True, text=True, cwd=ROOT, timeout=120)
  reports = [json.loads(line) for line in result.stdout.splitlines()]
  assert reports[0]["errors"] == 0 and reports[0]["warnings"] == 0, reports[0]["messages"]
  assert reports[1]["errors"] > 0 and result.returncode == 1


def _screenshot(page, path, width=480, height=360):
  subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu-sandbox",
                  "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                  "--no-first-run", "--disable-extensions", "--allow-file-access-from-files",
                  f"--window-size={width},{height}", "--virtual-time-budget=4000",
                  f"--screenshot={path}", page], capture_output=True, timeout=120, check=False)
  assert os.path.isfile(path), "chromium wrote no screenshot"
  return np.asarray(PIL.Image.open(path).convert("RGB"), np.float64)


@pytest.mark.skipif(not CHROMIUM, reason="needs Debian's chromium (.ci/run installs it)")
def test_viewer_shows_the_face_and_switches_textures(tmp_path):
  try:
    viewer.three_dir()
  except viewer.ViewerUnavailable as e:
    pytest.skip(str(e))
  vertices, triangles, _ = _dome()
  red = np.tile([230.0, 40.0, 40.0], (len(vertices), 1))
  green = np.tile([40.0, 220.0, 40.0], (len(vertices), 1))
  page = tmp_path / "viewer.html"
  viewer.write(page, vertices, triangles, {"red": red, "green": green}, title="dome")
  assert "https://" not in page.read_text().split("window.GCN_FACE")[1]  # nothing to fetch
  first = _screenshot(f"file://{page}", str(tmp_path / "first.png"))
  second = _screenshot(f"file://{page}#green", str(tmp_path / "green.png"))
  background = np.array([int(viewer.BACKGROUND[i:i + 2], 16) for i in (1, 3, 5)], np.float64)
  h, w = first.shape[:2]
  centre = (slice(h // 2 - 20, h // 2 + 20), slice(w // 2 - 20, w // 2 + 20))
  corner = first[-10:, :10].reshape(-1, 3).mean(0)
  np.testing.assert_allclose(corner, background, atol=3)
  r, g, b = first[centre].reshape(-1, 3).mean(0)
  assert r > 120 and r > 2 * g and r > 2 * b, (r, g, b)
  r, g, b = second[centre].reshape(-1, 3).mean(0)
  assert g > 120 and g > 2 * r and g > 2 * b, (r, g, b)
  covered = np.abs(first - background).sum(-1) > 30
  assert 0.1 < covered.mean() < 0.9  # the mesh fills a good part of the view, not all of it


def test_viewer_rejects_mismatched_colours(tmp_path):
  vertices, triangles, _ = _dome(4)
  with pytest.raises(ValueError, match="has 3 rows"):
    viewer.page(vertices, triangles, {"a": np.zeros((3, 3))})


def test_turntable_turns_both_ways():
  vertices, triangles, _ = _dome()
  left_right = np.where(vertices[:, :1] > 0, [[220.0, 60.0, 60.0]], [[60.0, 60.0, 220.0]])
  angles = turntable.yaw_angles()
  assert len(angles) >= 24 and angles.max() == pytest.approx(60.0)
  assert angles.min() == pytest.approx(-60.0)
  images = turntable.render(vertices, triangles, [left_right, np.full_like(left_right, 200)],
                            [0.0, 60.0, -60.0], size=96).astype(np.float64)
  coloured, grey = images[:, :, :96], images[:, :, 96:]
  assert images.shape == (3, 96, 192, 3)
  # The camera moved to the +x side at +60 degrees: that side (red) fills more of the view.
  def red_share(image):
    face = np.abs(image - 255.0).sum(-1) > 30
    return ((image[..., 0] > image[..., 2] + 50) & face).sum() / face.sum()
  assert red_share(coloured[0]) == pytest.approx(0.5, abs=0.1)
  assert red_share(coloured[1]) > 0.7 and red_share(coloured[2]) < 0.3
  # The mirror-symmetric grey mesh: -60 degrees is +60 degrees mirrored.
  np.testing.assert_allclose(grey[1], grey[2][:, ::-1], atol=40)
  assert np.mean(np.abs(grey[1] - grey[2][:, ::-1])) < 3


def test_gif_has_every_frame(tmp_path):
  frames = np.zeros((24, 20, 30, 3), np.uint8)
  frames[np.arange(24), :, np.arange(24)] = 255  # a moving bar
  turntable.write_gif(tmp_path / "t.gif", frames)
  with PIL.Image.open(tmp_path / "t.gif") as gif:
    assert gif.n_frames == 24 and gif.size == (30, 20)
    gif.seek(5)
    assert np.asarray(gif.convert("RGB"))[10, 5].min() > 200


def _run_quietly(*args, **env):
  environment = {k: v for k, v in os.environ.items()
                 if k not in ("TF_CPP_MIN_LOG_LEVEL", "GCN_FACE_TF_LOGS")}
  environment.update(env)
  return subprocess.run([sys.executable, "-m", "scripts.render_mesh", *args], cwd=ROOT,
                        env=environment, capture_output=True, text=True, timeout=300)


def test_logs_are_quiet_unless_asked(tmp_path):
  out = str(tmp_path / "cube.png")
  quiet = _run_quietly(f"--output={out}")
  assert quiet.returncode == 0, quiet.stderr[-2000:]
  assert os.path.isfile(out)
  noise = [line for line in quiet.stderr.splitlines()
           if "oneDNN" in line or "absl::InitializeLog" in line or line.startswith("I0000")
           or "cpu_feature_guard" in line]
  assert not noise, noise
  loud = _run_quietly(f"--output={out}", "--verbosity=1")
  also = _run_quietly(f"--output={out}", GCN_FACE_TF_LOGS="1")
  for result in (loud, also):
    assert result.returncode == 0
    assert "I0000" in result.stderr or "oneDNN" in result.stderr  # TensorFlow's own lines
  bad = _run_quietly("--mesh=/no/such.obj")
  assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1].startswith("error: ")
