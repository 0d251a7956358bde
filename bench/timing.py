"""Shared timing helper for the benchmarks: median/min wall and CPU time."""

import gc
import json
import os
import platform
import statistics
import time


def measure(fn, repeats, warmup=2):
  """Runs fn() warmup + repeats times; returns wall/CPU ms statistics of the repeats.

  Python's cyclic garbage collector is paused while timing (as `timeit` does):
  its passes over the interpreter's objects are not the measured code's work.
  """
  for _ in range(warmup):
    fn()
  wall, cpu = [], []
  gc.collect()
  gc_was_enabled = gc.isenabled()
  gc.disable()
  try:
    for _ in range(repeats):
      w0, c0 = time.perf_counter(), time.process_time()
      fn()
      cpu.append((time.process_time() - c0) * 1e3)
      wall.append((time.perf_counter() - w0) * 1e3)
  finally:
    if gc_was_enabled:
      gc.enable()
  return {
      "wall_ms_median": round(statistics.median(wall), 3),
      "wall_ms_min": round(min(wall), 3),
      "cpu_ms_median": round(statistics.median(cpu), 3),
      "cpu_ms_min": round(min(cpu), 3),
      "repeats": repeats,
  }


def machine():
  """The CPU the numbers were taken on (a VM's host changes between sessions).

  Returns:
    dict with the model name, family/model numbers and SIMD extensions from
    /proc/cpuinfo (Linux), else platform.processor(), and the CPU count.
  """
  info = {"cpu_count": os.cpu_count()}
  try:
    with open("/proc/cpuinfo") as f:
      first_cpu = f.read().split("\n\n")[0].splitlines()
  except OSError:
    return dict(info, cpu=platform.processor())
  fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in first_cpu
                                              if ":" in line)}
  flags = set(fields.get("flags", "").split())
  return dict(info, cpu=fields.get("model name", ""), cpu_family=fields.get("cpu family"),
              cpu_model=fields.get("model"),
              simd=[f for f in ("avx2", "fma", "avx512f") if f in flags])


def report_json(report, path=None):
  """Prints a report as JSON, `machine()` added; writes it atomically to `path` if given."""
  report = dict(report, machine=machine())
  text = json.dumps(report, indent=2)
  print(text)
  if path:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      f.write(text + "\n")
    os.replace(tmp, path)
