"""The project has no import circles (tools/import_graph.py reads the source; nothing is
imported), and the tool finds a circle when there is one."""

from __future__ import annotations

import importlib.util
from pathlib import Path

TOOL = Path(__file__).resolve().parents[2] / "tools" / "import_graph.py"


def _tool():
    spec = importlib.util.spec_from_file_location("import_graph", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_module_of_the_project_imports_one_that_imports_it_back():
    tool = _tool()
    found = tool.modules()
    graph = tool.edges(found)
    assert "abrl_deploy.cli.bench" in graph["abrl_deploy.cli"]  # the graph is really read
    assert tool.circles(graph) == []


def test_the_tool_finds_a_circle_and_resolves_relative_imports(tmp_path, monkeypatch):
    tool = _tool()
    pkg = tmp_path / "abrl_deploy"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .sub import b\n")  # lazy imports count
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from ..a import f\nimport abrl_deploy.c\n")
    (pkg / "c.py").write_text("import os\n")
    monkeypatch.setattr(tool, "SOURCES", {"abrl_deploy": pkg})
    graph = tool.edges(tool.modules())
    assert graph["abrl_deploy.sub.b"] == {"abrl_deploy.a", "abrl_deploy.c"}
    assert tool.circles(graph) == [["abrl_deploy.a", "abrl_deploy.sub.b"]]


def test_every_import_goes_down_the_layers_and_a_planted_one_up_is_found(tmp_path, monkeypatch):
    tool = _tool()
    assert tool.layer_violations(tool.edges(tool.modules())) == []
    pkg = tmp_path / "abrl_deploy"
    for sub in ("training", "bench"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "predictor.py").write_text("def f():\n    from abrl_deploy.bench import x\n")  # up
    (pkg / "bench" / "x.py").write_text("from abrl_deploy import predictor\n")  # down: fine
    (pkg / "training" / "t.py").write_text("import abrl_deploy.bench.x\n")  # sideways: refused
    monkeypatch.setattr(tool, "SOURCES", {"abrl_deploy": pkg})
    found = tool.layer_violations(tool.edges(tool.modules()))
    assert found == [
        "abrl_deploy.predictor (core) -> abrl_deploy.bench.x (bench)",
        "abrl_deploy.training.t (training) -> abrl_deploy.bench.x (bench)",
    ]
