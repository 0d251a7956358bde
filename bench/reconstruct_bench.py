"""Per-photo reconstruction latency (issue: reconstruction targets), model loading excluded.

On the real photos of ../shared/data/deep3d/input with the real 35,709-vertex BFM topology
(the synthetic model on Deep3D's facemodel_info.mat) and a GCN of the release's size
(random weights: the compute is the trained one's):

  rnet: dlib detection + 68 landmarks, alignment, skin mask, the R-Net (ResNet-50, weights
        from a frozen graph built like tests/slim_rnet_graph.py), face formation, the GCN and
        the renders. Target <= 1.5 s.
  fit:  the same with analysis-by-synthesis instead of the R-Net (default 150 + 100 steps).
        Target <= 20 s.
  write: writing one face's files (OBJ x2, PLY, PNGs with the full-resolution paste-back).

  python -m bench.reconstruct_bench --output=bench/results/reconstruct.json
"""

import glob
import os
import tempfile
import time

from absl import app, flags

from bench.timing import measure, report_json

FLAGS = flags.FLAGS
SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..",
                      "shared", "data", "deep3d")
flags.DEFINE_string("photos", os.path.join(SHARED, "input"), "Folder of test photos.")
flags.DEFINE_string("facemodel_info", os.path.join(SHARED, "BFM", "facemodel_info.mat"),
                    "Deep3D's facemodel_info.mat (the real topology).")
flags.DEFINE_integer("repeats", 5, "Timed photos per configuration (R-Net path).")
flags.DEFINE_integer("fit_repeats", 3, "Timed photos in fit mode.")
flags.DEFINE_string("output", None, "Optional JSON output path (also printed).")


def main(argv):
  del argv
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from deep3dface import face_model, rnet, synthetic  # pylint: disable=g-import-not-at-top
  from gcn_face import mesh_sampling, reconstruction, refinement  # pylint: disable=g-import-not-at-top
  from gcn_face.identity import encoder  # pylint: disable=g-import-not-at-top
  from tests import slim_rnet_graph  # pylint: disable=g-import-not-at-top
  photos = sorted(glob.glob(os.path.join(FLAGS.photos, "*.jpg")))
  if not photos:
    raise SystemExit(f"error: no photos in {FLAGS.photos}")
  work = tempfile.mkdtemp()
  model = synthetic.synthetic_model("bfm", FLAGS.facemodel_info)
  sampling = mesh_sampling.load_or_build(model.mean_shape, model.triangles,
                                         directory=os.path.join(work, "sampling"))
  module = refinement.TextureRefinement(face_model.FaceModel(model), sampling,
                                        encoder.DlibEncoder())
  rnet_model = rnet.from_frozen_graph(slim_rnet_graph.write(os.path.join(work, "rnet.pb")))
  report = {"photos": FLAGS.photos, "vertices": int(model.num_vertices),
            "threads": tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()}
  cycle = iter(photos * 10)

  def timed(rec, repeats):
    return measure(lambda: rec.reconstruct(next(cycle)), repeats, warmup=1)

  # The first photo of a process pays for tracing every function (fit, formation, GCN,
  # renders): once per process, so one measurement, taken before anything else has run.
  fitter = reconstruction.Reconstructor(model, None, module)
  start = time.perf_counter()
  fitter.reconstruct(photos[0])
  report["fit_first_photo_ms"] = round((time.perf_counter() - start) * 1e3, 1)
  rec = reconstruction.Reconstructor(model, rnet_model, module)
  report["rnet"] = timed(rec, FLAGS.repeats)
  face = rec.reconstruct(photos[0])
  out = os.path.join(work, "out")
  report["write"] = measure(lambda: reconstruction.write_outputs(face, out, rec.triangles),
                            FLAGS.repeats, warmup=1)
  report["fit"] = timed(fitter, FLAGS.fit_repeats)
  report["targets"] = {"rnet_s": 1.5, "fit_s": 20.0, "fit_first_photo_s": 10.0,
                       "rnet_met": report["rnet"]["wall_ms_median"] <= 1500.0,
                       "fit_met": report["fit"]["wall_ms_median"] <= 20000.0,
                       "fit_first_photo_met": report["fit_first_photo_ms"] <= 10000.0}
  report_json(report, FLAGS.output)


if __name__ == "__main__":
  app.run(main)
