"""Editing frozen graphs in tests: rename, reshape or poison one node and write a copy."""

from deep3dface import frozen_graph


def edited_graph(graph_path, tmp_path, edit):
  """Writes `edit(graph_def)` of the graph at `graph_path` to tmp_path/edited.pb."""
  graph_def = frozen_graph.read_graph_def(graph_path)
  edit(graph_def)
  path = str(tmp_path / "edited.pb")
  with open(path, "wb") as f:
    f.write(graph_def.SerializeToString())
  return path


def node(graph_def, name):
  return next(n for n in graph_def.node if n.name == name)
