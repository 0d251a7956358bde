"""Benchmark of the rasterizer and mesh_renderer (issue: renderer targets).

Scene: batch 4, 224 x 224, the real BFM09 front-face topology (35,709 vertices,
70,789 triangles) on a face-like surface filling most of the image, seen by
Deep3D's camera. Falls back to a 134 x 134 grid (35,912 vertices / 71,824
triangles) when ../shared is absent. Each configuration runs in a subprocess,
since TensorFlow fixes its intra-op thread count at start-up; the 1-thread one is
pinned to one core.

  python -m bench.renderer_bench --output=bench/results/renderer.json

With --tfmr_dir (a folder holding tf_mesh_renderer's rasterize_triangles_op.cc,
rasterize_triangles_grad.cc, rasterize_triangles_impl.cc and .h: the clip-space version
Deep3D ships in its renderer/ folder, not part of this project) the original op is compiled
against the installed TensorFlow and timed beside ours in the same process, one op per image
as its rasterize_triangles.py calls it, and the ratios are reported: of the medians (wall,
cpu), of the minima (wall_min) and, with the two taking turns, the median of the paired
ratios (interleaved_wall).
"""

import json
import os
import subprocess
import sys
import tempfile

from absl import app, flags, logging

from bench.timing import report_json

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch_size", 4, "Images per batch.")
flags.DEFINE_integer("image_size", 224, "Width and height in pixels.")
flags.DEFINE_integer("repeats", 20, "Timed repetitions per measurement.")
flags.DEFINE_integer("warmup", 10, "Untimed calls before each measurement (the first calls of a "
                     "fresh process run slow while its threads and allocator settle).")
flags.DEFINE_list("threads", ["1", "0"], "Intra-op thread counts to run (0 = TF default).")
flags.DEFINE_string("topology", os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                                              "data", "deep3d", "BFM", "facemodel_info.mat"),
                    "facemodel_info.mat with the BFM front-face triangles.")
flags.DEFINE_string("output", None, "Optional JSON output path (also printed).")
flags.DEFINE_string("tfmr_dir", None, "Folder with tf_mesh_renderer's rasterize_triangles "
                    "kernel sources: time the original beside ours.")
flags.DEFINE_string("tfmr_library", None, "Internal: the compiled original op library.")
flags.DEFINE_integer("child_threads", None, "Internal: run one configuration in-process.")

DEEP3D_CAMERA_DISTANCE = 10.0  # dm, SPEC 2.9
DEEP3D_FOV_Y = 12.5936  # degrees, 2 atan(112 / 1015)
TFMR_SOURCES = ("rasterize_triangles_op.cc", "rasterize_triangles_grad.cc",
                "rasterize_triangles_impl.cc")


def _build_original(source_dir, output_dir):
  """Compiles tf_mesh_renderer's CPU op as its BUILD does (-O2), for this TensorFlow."""
  import tensorflow as tf
  missing = [f for f in TFMR_SOURCES + ("rasterize_triangles_impl.h",)
             if not os.path.isfile(os.path.join(source_dir, f))]
  if missing:
    raise SystemExit(f"error: --tfmr_dir {source_dir}: missing {', '.join(missing)}")
  library = os.path.join(output_dir, "rasterize_triangles_kernel.so")
  command = (["g++", "-std=c++17", "-shared", "-fPIC", "-O2", "-o", library] +
             [os.path.join(source_dir, f) for f in TFMR_SOURCES] +
             tf.sysconfig.get_compile_flags() + tf.sysconfig.get_link_flags())
  built = subprocess.run(command, capture_output=True, text=True, check=False)
  if built.returncode != 0:
    raise SystemExit(f"error: --tfmr_dir {source_dir}: g++ failed: {built.stderr[-2000:]}")
  return library


def _original_rasterizer(library):
  """tf_mesh_renderer's rasterize_triangles op and its registered gradient."""
  import tensorflow as tf
  module = tf.load_op_library(library)

  @tf.RegisterGradient("RasterizeTriangles")
  def _gradient(op, df_dbarycentrics, unused_ids, unused_z):
    return [module.rasterize_triangles_grad(
        op.inputs[0], op.inputs[1], op.outputs[0], op.outputs[1], df_dbarycentrics,
        op.get_attr("image_width"), op.get_attr("image_height")), None]

  def rasterize(clip, triangles, size):
    # One op per image, as tf_mesh_renderer's rasterize_triangles.py loops over the batch.
    return tf.stack([module.rasterize_triangles(clip[b], triangles, size, size)[0]
                     for b in range(clip.shape[0])])

  return rasterize


def _scene(batch_size):
  import numpy as np
  from renderer import scenes
  if os.path.isfile(FLAGS.topology):
    triangles = scenes.load_topology(FLAGS.topology)
    vertices, normals = scenes.face_like_mesh(triangles)
    name = "bfm_front_topology"
  else:
    vertices, triangles = scenes.grid_mesh(133, 133, 0.85, 1.05)
    vertices[:, 2] = 0.3 * np.cos(vertices[:, 0]) * np.cos(vertices[:, 1])
    normals = scenes.vertex_normals(vertices, triangles)
    name = "grid"
  rng = np.random.default_rng(0)
  angles = rng.uniform(-0.2, 0.2, size=(batch_size, 3))
  verts, norms = [], []
  for a in angles:  # small per-image rotations so images differ
    cx, cy, cz = np.cos(a)
    sx, sy, sz = np.sin(a)
    rot = (np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]) @
           np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]]) @
           np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]))
    verts.append(vertices @ rot.T)
    norms.append(normals @ rot.T)
  colors = rng.uniform(0.2, 0.9, size=(batch_size, len(vertices), 3))
  f32 = lambda x: np.asarray(x, np.float32)
  return name, f32(verts), triangles, f32(norms), f32(colors)


def _run_child(threads):
  if threads == 1 and hasattr(os, "sched_setaffinity"):
    # One core for the whole process (before TensorFlow starts its threads, which inherit it):
    # the scheduler otherwise moves the single compute thread between the cores' L2 caches.
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
  import tensorflow as tf
  tf.config.threading.set_intra_op_parallelism_threads(threads)
  tf.config.threading.set_inter_op_parallelism_threads(1 if threads == 1 else 0)
  import renderer
  from bench.timing import measure, measure_interleaved, paired_ratio

  size, batch = FLAGS.image_size, FLAGS.batch_size
  name, vertices, triangles, normals, colors = _scene(batch)
  vertices, normals, colors = map(tf.constant, (vertices, normals, colors))
  triangles = tf.constant(triangles)
  eye = tf.constant([0.0, 0.0, DEEP3D_CAMERA_DISTANCE])
  view = renderer.camera_utils.look_at(tf.tile(eye[None], [batch, 1]), tf.zeros([batch, 3]),
                                       tf.tile([[0.0, 1.0, 0.0]], [batch, 1]))
  proj = renderer.camera_utils.perspective(1.0, tf.fill([batch], DEEP3D_FOV_Y),
                                           tf.fill([batch], 0.01), tf.fill([batch], 50.0))
  clip = renderer.camera_utils.transform_homogeneous(tf.matmul(proj, view), vertices)
  weights = tf.random.stateless_uniform([batch, size, size, 3], seed=[1, 2])
  lights = tf.tile([[[0.0, 0.0, DEEP3D_CAMERA_DISTANCE]]], [batch, 1, 1])
  intensities = tf.ones([batch, 1, 3])
  ambient = tf.fill([batch, 3], 0.3)

  # The rasterizer functions, ours and the original's, return one value of their result:
  # fetching whole outputs (.numpy() copies 2.4-4 MB) took 0.1-1.7 ms on the AMD EPYC host
  # depending on other tenants' memory traffic, more than the ratio's margin.
  first_value = lambda t: tf.reshape(t, [-1])[0]

  @tf.function
  def rasterize_fwd(clip):
    return first_value(renderer.rasterize(clip, triangles, size, size).barycentrics)

  @tf.function
  def rasterize_fwd_bwd(clip):
    with tf.GradientTape() as tape:
      tape.watch(clip)
      bary = renderer.rasterize(clip, triangles, size, size).barycentrics
      loss = tf.reduce_sum(bary * weights)
    return first_value(tape.gradient(loss, clip))

  def render(vertices, colors):
    return renderer.mesh_renderer(vertices, triangles, normals, colors, eye, [0.0, 0.0, 0.0],
                                  [0.0, 1.0, 0.0], lights, intensities, size, size,
                                  ambient_color=ambient, fov_y=DEEP3D_FOV_Y, near_clip=0.01,
                                  far_clip=50.0)

  @tf.function
  def render_fwd(vertices, colors):
    return render(vertices, colors)

  # A training step's work: the loss value and its gradients (so the forward
  # shading runs too), RGB taken apart with split_channels.
  @tf.function
  def render_fwd_bwd(vertices, colors):
    with tf.GradientTape() as tape:
      tape.watch([vertices, colors])
      rgb, _ = renderer.split_channels(render(vertices, colors), [3, 1])
      loss = tf.reduce_sum(rgb * weights)
    return loss, tape.gradient(loss, [vertices, colors])

  # The same with `image[..., :3]`: TensorFlow's gradient of that strided
  # slice (StridedSliceGrad, outside the renderer) costs ~11 ms here.
  @tf.function
  def render_fwd_bwd_strided_slice(vertices, colors):
    with tf.GradientTape() as tape:
      tape.watch([vertices, colors])
      loss = tf.reduce_sum(render(vertices, colors)[..., :3] * weights)
    return loss, tape.gradient(loss, [vertices, colors])

  originals = {}
  if FLAGS.tfmr_library:
    original = _original_rasterizer(FLAGS.tfmr_library)

    @tf.function
    def original_fwd(clip):
      return first_value(original(clip, triangles, size))

    @tf.function
    def original_fwd_bwd(clip):
      with tf.GradientTape() as tape:
        tape.watch(clip)
        loss = tf.reduce_sum(original(clip, triangles, size) * weights)
      return first_value(tape.gradient(loss, clip))

    originals = {"rasterize_forward": original_fwd, "rasterize_forward_backward": original_fwd_bwd}

  coverage = float(tf.reduce_mean(tf.cast(
      renderer.rasterize(clip, triangles, size, size).triangle_ids >= 0, tf.float32)))
  sync = lambda r: tf.nest.map_structure(lambda t: t.numpy(), r)
  ours = {"rasterize_forward": lambda: sync(rasterize_fwd(clip)),
          "rasterize_forward_backward": lambda: sync(rasterize_fwd_bwd(clip))}
  results = {
      **{key: measure(fn, FLAGS.repeats, FLAGS.warmup) for key, fn in ours.items()},
      "mesh_renderer_forward": measure(lambda: sync(render_fwd(vertices, colors)),
                                       FLAGS.repeats, FLAGS.warmup),
      "mesh_renderer_forward_backward": measure(
          lambda: sync(render_fwd_bwd(vertices, colors)), FLAGS.repeats, FLAGS.warmup),
      "mesh_renderer_forward_backward_strided_slice": measure(
          lambda: sync(render_fwd_bwd_strided_slice(vertices, colors)), FLAGS.repeats,
          FLAGS.warmup),
  }
  for key, fn in originals.items():
    run_original = lambda fn=fn: fn(clip).numpy()
    results[f"original_{key}"] = measure(run_original, FLAGS.repeats, FLAGS.warmup)
    results[f"speedup_{key}"] = {
        stat: round(results[f"original_{key}"][f"{stat}_ms_median"] /
                    results[key][f"{stat}_ms_median"], 2) for stat in ("wall", "cpu")}
    # Of the fastest runs: another tenant's load only ever adds time.
    results[f"speedup_{key}"]["wall_min"] = round(
        results[f"original_{key}"]["wall_ms_min"] / results[key]["wall_ms_min"], 2)
    # The same two taking turns within each repeat: each then starts with the other's data in
    # the caches, and a slow spell of the host falls on both (median of the paired ratios).
    _, wall = measure_interleaved({"ours": ours[key], "original": run_original}, FLAGS.repeats,
                                  FLAGS.warmup)
    results[f"speedup_{key}"]["interleaved_wall"] = paired_ratio(wall["original"], wall["ours"])
  return {
      "scene": name,
      "vertices": int(vertices.shape[1]),
      "triangles": int(triangles.shape[0]),
      "covered_pixel_fraction": round(coverage, 4),
      "intra_op_threads": threads,
      "pinned_cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
      "results": results,
  }


def main(argv):
  del argv
  if FLAGS.child_threads is not None:
    print(json.dumps(_run_child(FLAGS.child_threads)))
    return
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  runs = []
  extra = []
  if FLAGS.tfmr_dir:
    extra = [f"--tfmr_library={_build_original(FLAGS.tfmr_dir, tempfile.mkdtemp())}"]
  for threads in FLAGS.threads:
    logging.info("running configuration: intra_op_threads=%s", threads)
    args = [sys.executable, "-m", "bench.renderer_bench", f"--child_threads={threads}"] + [
        f"--{f}={FLAGS[f].value}" for f in ("batch_size", "image_size", "repeats", "warmup",
                                            "topology")
    ] + extra
    out = subprocess.run(args, cwd=root, capture_output=True, text=True,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    if out.returncode != 0:
      logging.error("configuration failed:\n%s", out.stderr[-3000:])
      raise SystemExit(1)
    runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    if runs[-1]["scene"] == "grid":
      logging.warning("%s not found: measured the grid fallback scene, not comparable with "
                      "BFM-topology results", FLAGS.topology)
  report = {"benchmark": "renderer", "batch_size": FLAGS.batch_size,
            "image_size": FLAGS.image_size, "runs": runs}
  report_json(report, FLAGS.output)


if __name__ == "__main__":
  app.run(main)
