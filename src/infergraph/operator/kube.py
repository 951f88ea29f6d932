"""A small asynchronous Kubernetes client: discovery, server-side apply, get, delete.

kopf talks to the API for the InferenceGraphs it watches; the children are arbitrary kinds
(Seldon, KEDA, autoscaling, whatever a renderer emits), so they go through this client,
authenticated with the same `kopf.ConnectionInfo` the operator logged in with.
Server-side apply is a PATCH with `application/apply-patch+yaml` (JSON is valid YAML),
`fieldManager` and `force=true`: the operator owns every field it renders.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiohttp
import kopf

from infergraph.json_types import (
    JSONObject,
    Manifest,
    as_object,
    as_objects,
    as_str,
    object_or_empty,
)
from infergraph.operator.objects import api_version_of, kind_of, name_of, namespace_of

APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
# Objects per page of a list (`limit`/`continue`), as kubectl's default --chunk-size: a
# cluster's Pods are read a page at a time, never as one body.
LIST_PAGE = 500
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)


class KubeError(Exception):
    """An API call failed; `status` is the HTTP status, `reason` the API server's message."""

    def __init__(self, action: str, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        where = f"HTTP {status}: " if status else "no answer: "
        super().__init__(f"{action}: {where}{reason}")


@dataclass(frozen=True)
class ApiResource:
    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None, name: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        ns = f"/namespaces/{namespace}" if self.namespaced and namespace else ""
        return f"{base}{ns}/{self.plural}" + (f"/{name}" if name else "")


def ref(obj: Manifest, home: str | None = None) -> dict[str, str]:
    """The identity of an object the operator tracks: apiVersion, kind, name, and its namespace
    when that is not `home` (the graph's: a relocated Seldon v2 ServerConfig)."""
    out = {"apiVersion": api_version_of(obj), "kind": kind_of(obj), "name": name_of(obj)}
    namespace = namespace_of(obj)
    if home is not None and namespace and namespace != home:
        out["namespace"] = namespace
    return out


class KubeClient:
    """One aiohttp session against one API server; discovery results are cached per session."""

    def __init__(self, info: kopf.ConnectionInfo, field_manager: str) -> None:
        self.server = info.server.rstrip("/")
        self.field_manager = field_manager
        headers = {"Accept": "application/json"}
        if info.token:
            headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
        auth = aiohttp.BasicAuth(info.username, info.password or "") if info.username else None
        connector = aiohttp.TCPConnector(ssl=_ssl_context(info))
        self._session = aiohttp.ClientSession(
            headers=headers, auth=auth, connector=connector, timeout=REQUEST_TIMEOUT
        )
        self._resources: dict[tuple[str, str], ApiResource] = {}

    async def close(self) -> None:
        await self._session.close()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        data: str | None = None,
        json_body: JSONObject | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, object]:
        """(status, parsed body); a connection failure is a KubeError with status 0."""
        url = self.server + path
        try:
            async with self._session.request(
                method, url, params=params, data=data, json=json_body, headers=headers
            ) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, RuntimeError) as exc:  # Runtime: closed
            raise KubeError(f"{method} {path}", 0, f"{type(exc).__name__}: {exc}") from None
        body: object
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = text
        return status, body

    async def resource(self, api_version: str, kind: str) -> ApiResource:
        """Plural and scope of `kind` from the API's discovery documents."""
        key = (api_version, kind)
        if key not in self._resources:
            path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            status, body = await self._call("GET", path)
            if status != 200:
                raise KubeError(f"discover {kind} ({api_version})", status, _reason(body))
            self._discovered(api_version, as_object(body or {}, f"the answer to GET {path}"))
            if key not in self._resources:
                raise KubeError(f"discover {kind}", 404, f"{api_version} does not serve {kind}")
        return self._resources[key]

    def _discovered(self, api_version: str, document: JSONObject) -> None:
        """Cache the kinds of one discovery document (subresources such as `x/status` not)."""
        for i, item in enumerate(as_objects(document.get("resources", []), "resources")):
            name = as_str(item.get("name"), f"resources[{i}].name")
            if "/" not in name:
                kind = as_str(item.get("kind"), f"resources[{i}].kind")
                self._resources[(api_version, kind)] = ApiResource(
                    api_version, kind, name, bool(item.get("namespaced"))
                )

    async def apply(self, obj: Manifest) -> Manifest:
        """Server-side apply `obj` under the operator's field manager; returns the live object."""
        kind, name = kind_of(obj), name_of(obj)
        res = await self.resource(api_version_of(obj), kind)
        status, body = await self._call(
            "PATCH",
            res.path(namespace_of(obj), name),
            params={"fieldManager": self.field_manager, "force": "true"},
            data=json.dumps(obj),
            headers={"Content-Type": APPLY_CONTENT_TYPE},
        )
        if status not in (200, 201):
            raise KubeError(f"apply {kind} {name}", status, _reason(body))
        return as_object(body, f"the answer to apply {kind} {name}")

    async def get(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> Manifest | None:
        res = await self.resource(api_version, kind)
        status, body = await self._call("GET", res.path(namespace, name))
        if status == 404:
            return None
        if status != 200:
            raise KubeError(f"get {kind} {name}", status, _reason(body))
        return as_object(body, f"the answer to get {kind} {name}")

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        *,
        field_selector: str | None = None,
        keep: Callable[[Manifest], bool] | None = None,
    ) -> list[Manifest]:
        """Every object of `kind` in `namespace` (that `keep` keeps), read a page of
        `LIST_PAGE` at a time: the API server's chunked lists, each page's
        `metadata.continue` naming the next."""
        res = await self.resource(api_version, kind)
        params = {"limit": str(LIST_PAGE)}
        if field_selector:
            params["fieldSelector"] = field_selector
        kept: list[Manifest] = []
        while True:
            status, body = await self._call("GET", res.path(namespace), params=params)
            if status != 200:
                raise KubeError(f"list {kind}", status, _reason(body))
            page = as_object(body or {}, f"the answer to list {kind}")
            items = as_objects(page.get("items") or [], f"the answer to list {kind}: items")
            kept += filter(keep, items) if keep is not None else items
            token = object_or_empty(page, "metadata").get("continue")
            if not token:
                return kept
            params = {**params, "continue": str(token)}

    async def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> bool:
        """Delete in the background (the API server's GC removes dependents); False if absent."""
        res = await self.resource(api_version, kind)
        status, body = await self._call(
            "DELETE", res.path(namespace, name), json_body={"propagationPolicy": "Background"}
        )
        if status == 404:
            return False
        if status not in (200, 202):
            raise KubeError(f"delete {kind} {name}", status, _reason(body))
        return True


def _reason(body: object) -> str:
    if isinstance(body, dict):
        return str(body.get("message") or body.get("reason") or body)
    return str(body)[:300]


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    if not info.server.startswith("https"):
        return False
    if info.insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        cadata = _text(info.ca_data)
        ctx = ssl.create_default_context(
            cafile=str(info.ca_path) if info.ca_path else None, cadata=cadata
        )
    cert = _file(info.certificate_path, info.certificate_data)
    key = _file(info.private_key_path, info.private_key_data)
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def _text(data: str | bytes | None) -> str | None:
    """kopf passes kubeconfig `*-data` fields base64-encoded or decoded; accept both."""
    if data is None:
        return None
    raw = data.encode() if isinstance(data, str) else data
    if b"-----BEGIN" not in raw:
        raw = base64.b64decode(raw)
    return raw.decode()


def _file(
    path: str | bytes | os.PathLike[str] | os.PathLike[bytes] | None, data: str | bytes | None
) -> str | None:
    """`load_cert_chain` wants files: inline kubeconfig data goes to a private temp file."""
    if path:
        return str(path)
    text = _text(data)
    if text is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as handle:
        handle.write(text)
    return handle.name
