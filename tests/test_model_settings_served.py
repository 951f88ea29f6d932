"""Seldon v2 settings that reach the runtime: the operator serves each Model's folder.

Issue 26 item 2. The renderer points a Model whose weights are not in its storage folder at the
operator's settings server (`Model.spec.storageUri` an rclone `http` connection string ending
in the settings' content hash), and the server answers as rclone's `http` backend reads
folders. The copy tests use the real rclone (Debian's, `make rclone`) exactly as Seldon's agent
drives its rclone sidecar: the Model's storageUri as the source of a copy into a local folder
(seldon-core v2.10.2 `scheduler/pkg/agent/rclone/rclone.go:320-349`: `/sync/copy` with
`srcFs` = the storageUri when the Model names no `secretName`; `rclone copy` is the same
operation from the command line). Debian 12's rclone is 1.60.1, Seldon's sidecar 1.71.1
(seldon-core v2.10.2 `scheduler/Dockerfile.rclone:1`); both take a root that HEAD redirects to
`<root>/` as a folder and list `text/html` index pages (rclone `backend/http/http.go`
`getFsEndpoint`, v1.60.1:140-216 and v1.71.1:145-216). The server is the operator's real
aiohttp app on a port.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from infergraph.errors import RenderError
from infergraph.graph.plan import parse_graph
from infergraph.operator.settings_server import SettingsStore, serve_settings
from infergraph.ports import free_port
from infergraph.render import RenderOptions, render, render_files
from infergraph.render.common import dumps
from infergraph.render.seldon_v2 import SETTINGS_FILE, model_settings, served_settings
from tests.test_render_schemas import crds_available, validate
from tests.test_render_seldon import INLINE, by_kind

RCLONE = shutil.which("rclone")
needs_rclone = pytest.mark.skipif(
    RCLONE is None,
    reason="rclone not installed: `make rclone` apt-installs Debian's (make unit does)",
)
BUCKET = "s3://team-bucket/graphs"


def cascade(**edits: Any) -> Any:
    """The inline cascade (hub-id nodes `small` and `big`, gate and pass-through helpers)
    plus an artifact-backed node `art` whose weights live in a bucket folder."""
    doc = copy.deepcopy(INLINE["cascade"])
    small = doc["spec"]["nodes"][0]
    small["batching"] = {"maxBatchSize": edits.get("batch", 8), "maxBatchTimeMs": 5}
    doc["spec"]["graph"]["sequence"][1]["when"]["value"] = edits.get("threshold", 0.8)
    doc["spec"]["nodes"].append(
        {
            "name": "art",
            "family": "identity",
            "modelUri": "s3://team-bucket/weights/art",
            "resources": {"cpu": "1", "memory": "1Gi"},
        }
    )
    doc["spec"]["graph"]["sequence"].append({"node": "art", "role": "output-transformer"})
    return parse_graph(doc)


def storage_uris(graph: Any, options: RenderOptions) -> dict[str, str]:
    models = by_kind(render(graph, "seldon-v2", options), "Model")
    return {m["metadata"]["name"]: m["spec"]["storageUri"] for m in models}


class Served:
    """The operator's settings server on a free port, filled as a reconcile pass fills it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.options = RenderOptions(storage_uri=BUCKET, settings_url=self.url)
        self.store = SettingsStore()

    def publish(self, graph: Any) -> None:
        self.store.replace("ml", graph.name, served_settings(graph, self.options))


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    s = Served()
    runner = await serve_settings(s.store, s.port, host="127.0.0.1")
    try:
        yield s
    finally:
        await runner.cleanup()


async def agent_copy(storage_uri: str, into: Path) -> Path:
    """Seldon's agent's copy of a Model folder, with the real rclone; the copied file."""
    assert RCLONE is not None
    proc = await asyncio.create_subprocess_exec(
        RCLONE,
        "copy",
        "--config",
        os.devnull,
        storage_uri,
        str(into),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out.decode()
    return into / SETTINGS_FILE


# -- the renderer ----------------------------------------------------------------------------
def test_without_a_settings_url_models_keep_their_bucket_folders() -> None:
    uris = storage_uris(cascade(), RenderOptions(storage_uri=BUCKET))
    assert uris["cascade-x-small"] == f"{BUCKET}/cascade-x/small"
    assert uris["cascade-x-gate-0"] == f"{BUCKET}/cascade-x/cascade-x-gate-0"
    assert served_settings(cascade(), RenderOptions(storage_uri=BUCKET)) == {}


def test_served_models_point_at_the_operator_by_content_hash() -> None:
    options = RenderOptions(storage_uri=BUCKET, settings_url="http://ig-settings.infergraph:8082")
    graph = cascade()
    uris = storage_uris(graph, options)
    served = served_settings(graph, options)
    # Hub ids and weightless helpers are served; the artifact-backed node keeps its bucket.
    assert sorted(served) == [
        "cascade-x-big",
        "cascade-x-gate-0",
        "cascade-x-pass-0",
        "cascade-x-small",
    ]
    assert uris["cascade-x-art"] == "s3://team-bucket/weights/art"
    for model, entry in served.items():
        assert entry.path.startswith(f"ml/cascade-x/{model}/"), entry.path
        assert uris[model] == f':http,url="http://ig-settings.infergraph:8082":{entry.path}'
        # The served bytes are the file `infergraph render` writes for the Model.
        assert entry.body == dumps(model_settings(graph, options)[model]).encode()
    if crds_available():  # Seldon's Model CRD takes the connection string (a plain string)
        assert [p for o in render(graph, "seldon-v2", options) for p in validate(o)] == []


def test_a_settings_edit_changes_only_the_edited_models_storage_uri() -> None:
    options = RenderOptions(storage_uri=BUCKET, settings_url="http://s:8082")
    before = storage_uris(cascade(), options)
    batching = storage_uris(cascade(batch=16), options)
    threshold = storage_uris(cascade(threshold=0.6), options)
    assert {m for m in before if before[m] != batching[m]} == {"cascade-x-small"}
    assert {m for m in before if before[m] != threshold[m]} == {"cascade-x-gate-0"}


def test_render_files_are_unchanged_by_the_served_mode(tmp_path: Path) -> None:
    """`infergraph render` still writes the folders users upload themselves."""
    source = tmp_path / "cascade.yaml"
    source.write_text(yaml.safe_dump(INLINE["cascade"]))
    files = render_files(source, "seldon-v2", RenderOptions(storage_uri=BUCKET))
    assert "cascade-x/model-settings/cascade-x-big/model-settings.json" in files
    assert ":http," not in files["cascade-x.yaml"]


# -- the server, as rclone's http backend reads it -------------------------------------------
async def test_folders_answer_as_rclones_http_backend_lists_them(served: Served) -> None:
    graph = cascade()
    served.publish(graph)
    entry = served_settings(graph, served.options)["cascade-x-small"]
    base = f"{served.url}/{entry.path}"
    async with aiohttp.ClientSession() as http:
        async with http.head(base, allow_redirects=False) as resp:
            # A redirect to `<path>/` is what makes rclone take the root as a folder.
            assert resp.status == 301 and resp.headers["Location"] == f"/{entry.path}/"
        async with http.get(f"{base}/") as resp:
            assert resp.headers["Content-Type"].startswith("text/html")
            assert f'<a href="{SETTINGS_FILE}">' in await resp.text()
        async with http.get(f"{base}/{SETTINGS_FILE}") as resp:
            assert resp.status == 200 and await resp.read() == entry.body
        async with http.get(f"{served.url}/ml/cascade-x/cascade-x-small/0000/") as resp:
            assert resp.status == 404


async def test_an_edit_keeps_the_previous_folder_one_more_rendering(served: Served) -> None:
    first = served_settings(cascade(), served.options)["cascade-x-small"]
    served.publish(cascade())
    served.publish(cascade(batch=16))
    served.publish(cascade(batch=16))  # an unchanged pass does not drop the previous folder
    assert served.store.file(first.path) == first.body
    served.publish(cascade(batch=32))
    assert served.store.file(first.path) is None
    served.store.forget("ml", "cascade-x")
    second = served_settings(cascade(batch=32), served.options)["cascade-x-small"]
    assert served.store.file(second.path) is None


# -- the agent's copy, with the real rclone --------------------------------------------------
@needs_rclone
async def test_the_agents_rclone_copy_gets_the_rendered_settings(
    served: Served, tmp_path: Path
) -> None:
    graph = cascade()
    served.publish(graph)
    uris = storage_uris(graph, served.options)
    for model in ("cascade-x-small", "cascade-x-gate-0"):
        copied = await agent_copy(uris[model], tmp_path / model)
        assert copied.read_bytes() == dumps(model_settings(graph, served.options)[model]).encode()
        assert sorted(p.name for p in (tmp_path / model).iterdir()) == [SETTINGS_FILE]


@needs_rclone
async def test_after_a_batching_edit_the_agent_copies_the_new_settings(
    served: Served, tmp_path: Path
) -> None:
    served.publish(cascade())
    edited = cascade(batch=16)
    served.publish(edited)
    uri = storage_uris(edited, served.options)["cascade-x-small"]
    copied = await agent_copy(uri, tmp_path / "new")
    extra = json.loads(copied.read_text())["parameters"]["extra"]
    assert extra["max_batch_size"] == 16


def test_cli_renders_the_operators_storage_uris_with_settings_url(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from infergraph.render.cli import app as render_app

    source = tmp_path / "cascade.yaml"
    source.write_text(yaml.safe_dump(INLINE["cascade"]))
    args = [str(source), "--engine", "seldon-v2", "--storage-uri", BUCKET]
    url = "http://ig-settings.infergraph:8082"
    result = CliRunner().invoke(render_app, [*args, "--settings-url", url])
    assert result.exit_code == 0, result.output
    models = [o for o in yaml.safe_load_all(result.output) if o["kind"] == "Model"]
    options = RenderOptions(storage_uri=BUCKET, settings_url=url)
    assert {m["metadata"]["name"]: m["spec"]["storageUri"] for m in models} == storage_uris(
        parse_graph(copy.deepcopy(INLINE["cascade"])), options
    )


# -- no storage prefix where nothing uses one -------------------------------------------------
SETTINGS_URL = "http://ig-settings.infergraph:8082"


def test_a_hub_id_graph_renders_without_a_storage_prefix_where_nothing_uses_one() -> None:
    """Issue 26: with the operator serving v2 settings, a graph whose nodes load hub ids (or
    name their own storage URI) writes no bucket prefix into any object on any engine, so none
    is asked for: Seldon v2 served Models point at the operator, KServe and Seldon v1 carry
    settings in env/parameters and the hub id as the runtime's `uri`."""
    served = render(cascade(), "seldon-v2", RenderOptions(settings_url=SETTINGS_URL))
    uris = [m["spec"]["storageUri"] for m in by_kind(served, "Model")]
    assert uris and all(
        u.startswith(":http,") or u.startswith("s3://team-bucket/weights") for u in uris
    )
    for engine in ("kserve", "seldon-v1"):
        objs = render(cascade(), engine, RenderOptions())
        assert objs and "REPLACE" not in json.dumps(objs) and "None/" not in json.dumps(objs)


@pytest.mark.parametrize(
    ("engine", "options", "model_uri"),
    [
        ("seldon-v2", RenderOptions(), None),  # bucket folders to upload: a prefix is needed
        ("seldon-v2", RenderOptions(settings_url=SETTINGS_URL), "/ckpt/small"),
        ("kserve", RenderOptions(), "/ckpt/small"),
        ("seldon-v1", RenderOptions(), "./ckpt/small"),
    ],
)
def test_a_storage_prefix_is_asked_for_where_an_object_would_name_it(
    engine: str, options: RenderOptions, model_uri: str | None
) -> None:
    """Unserved v2 settings folders and local checkpoints (uploaded next to their settings)
    live under `<prefix>/<graph>/<node>`: without a prefix the render stops and says how to
    give one."""
    graph = cascade()
    if model_uri:
        graph.spec.nodes[0].model_uri = model_uri
    with pytest.raises(RenderError) as caught:
        render(graph, engine, options)
    assert "--storage-uri" in str(caught.value) and "storageUri" in str(caught.value)
