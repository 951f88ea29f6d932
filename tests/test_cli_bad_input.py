"""The `infergraph` commands on bad input found by the 2026-12-07 review: each is refused with a
message naming what was wrong, exits non-zero, and leaves what was on disk as it was."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from infergraph.cli import app

REPO = Path(__file__).resolve().parent.parent


def _run(*args: str):
    return CliRunner().invoke(app, list(args))


def _flat(text: str) -> str:
    return " ".join(text.split())


def _bare(text: str) -> str:
    """Without whitespace: rich wraps long paths mid-word at 80 columns."""
    return "".join(text.split())


def test_render_all_from_a_missing_or_empty_folder_deletes_nothing(tmp_path: Path):
    """A typo in --graphs rendered no graph, yet the tree's own files (the Prometheus adapter
    values) made the Seldon v2 folder look rendered, and every graph's manifests in it were
    deleted as stale, with exit 0."""
    out = tmp_path / "rendered"
    (out / "seldon-v2").mkdir(parents=True)
    kept = out / "seldon-v2" / "cascade.yaml"
    kept.write_text("# rendered earlier\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    for folder in (tmp_path / "k8s" / "graph", empty):
        args = ["render", "--all", "--graphs", str(folder), "--out", str(out)]
        result = _run(*args, "--storage-uri", "s3://b/ig")
        assert result.exit_code != 0, result.output
        assert "nographfiles" in _bare(result.output) and str(folder) in _bare(result.output)
        assert kept.read_text() == "# rendered earlier\n"


def test_validate_prints_error_text_as_written(tmp_path: Path):
    """Messages were read as rich markup: '[x]' vanished from a name, the pattern the name
    must match was shown without its brackets, and a '[/docs]' in echoed YAML crashed."""
    doc = yaml.safe_load((REPO / "k8s/graphs/nlp.yaml").read_text())
    doc["metadata"]["name"] = "nlp[x]"
    bad_name = tmp_path / "name.yaml"
    bad_name.write_text(yaml.safe_dump(doc))
    result = _run("validate", str(bad_name))
    assert result.exit_code == 1
    text = _flat(result.output)
    assert "nlp[x]" in text and "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" in text
    broken = tmp_path / "broken.yaml"
    echoed = '  annotations: {note: "see [/docs]" oops}\n'  # YAML's error quotes this line
    broken.write_text("kind: InferenceGraph\nmetadata:\n" + echoed)
    crashed = _run("validate", str(broken))
    assert crashed.exit_code == 1 and isinstance(crashed.exception, SystemExit)
    assert "not valid YAML" in _flat(crashed.output) and "[/docs]" in crashed.output


def test_an_out_path_that_cannot_be_written_is_named(tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    graph = str(REPO / "k8s/graphs/cascade.yaml")
    rendered = _run("render", graph, "--engine", "kserve", "--out", str(blocker))
    assert rendered.exit_code != 0 and isinstance(rendered.exception, SystemExit)
    assert "cannotwrite" in _bare(rendered.output) and str(blocker) in _bare(rendered.output)
    folder = tmp_path / "a-folder"
    folder.mkdir()
    crd = _run("crd", "--out", str(folder))
    assert crd.exit_code != 0 and isinstance(crd.exception, SystemExit)
    assert "cannotwrite" in _bare(crd.output) and str(folder) in _bare(crd.output)


def test_a_graph_file_that_is_not_utf8_is_named(tmp_path: Path):
    """Windows PowerShell 5 writes redirected output as UTF-16: a UnicodeDecodeError traceback."""
    utf16 = tmp_path / "graph.yaml"
    utf16.write_bytes("kind: InferenceGraph\n".encode("utf-16"))
    result = _run("validate", str(utf16))
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "UTF-8" in _bare(result.output) and str(utf16) in _bare(result.output)


def test_serve_refuses_a_port_out_of_range():
    result = _run("serve", str(REPO / "k8s/graphs/cascade.yaml"), "--port", "99999")
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert "65535" in _flat(result.output)  # typer names the range


def test_serve_refuses_an_offline_scale_it_would_ignore():
    """Without --offline the hub's full checkpoints load: --offline-scale tiny was ignored."""
    result = _run("serve", str(REPO / "k8s/graphs/cascade.yaml"), "--offline-scale", "tiny")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "--offline-scale tiny needs --offline" in _flat(result.output)


def test_crd_printed_to_a_pipe_is_the_yaml_it_writes_to_a_file(tmp_path: Path) -> None:
    """`infergraph crd | kubectl apply -f -`: printed through rich, the YAML was wrapped at the
    console's 80 columns and no longer parsed."""
    printed = _run("crd")
    assert printed.exit_code == 0, printed.output
    written = tmp_path / "crd.yaml"
    assert _run("crd", "--out", str(written)).exit_code == 0
    assert printed.stdout == written.read_text()
    assert yaml.safe_load(printed.stdout)["kind"] == "CustomResourceDefinition"
