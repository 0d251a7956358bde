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
  return measure_interleaved({"fn": fn}, repeats, warmup)[0]["fn"]


def measure_interleaved(fns, repeats, warmup=2):
  """`measure` of several functions {name: fn}, taking turns within each repeat, so that a
  slow spell of the machine (another tenant of the VM host) falls on all of them alike.

  Returns:
    ({name: statistics as `measure`'s}, {name: the wall times in ms, repeat by repeat}).
  """
  for _ in range(warmup):
    for fn in fns.values():
      fn()
  wall = {name: [] for name in fns}
  cpu = {name: [] for name in fns}
  gc.collect()
  gc_was_enabled = gc.isenabled()
  gc.disable()
  try:
    for _ in range(repeats):
      for name, fn in fns.items():
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        cpu[name].append((time.process_time() - c0) * 1e3)
        wall[name].append((time.perf_counter() - w0) * 1e3)
  finally:
    if gc_was_enabled:
      gc.enable()
  return {name: {
      "wall_ms_median": round(statistics.median(wall[name]), 3),
      "wall_ms_min": round(min(wall[name]), 3),
      "cpu_ms_median": round(statistics.median(cpu[name]), 3),
      "cpu_ms_min": round(min(cpu[name]), 3),
      "repeats": repeats,
  } for name in fns}, wall


def paired_ratio(slow, fast):
  """Median over the repeats of slow / fast wall time (lists from `measure_interleaved`)."""
  return round(statistics.median(s / f for s, f in zip(slow, fast)), 2)


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
