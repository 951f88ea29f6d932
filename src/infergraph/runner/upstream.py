"""Calls from the local router to the nodes' servers over pooled keep-alive connections.

A pooled connection can be closed by the node's server at the moment a request is written on
it: uvicorn (so MLServer) closes idle connections after `timeout_keep_alive`, 5 s by default
(uvicorn/config.py:234; MLServer's rest/server.py passes no other). The request then fails with
no reply at all. Two things keep that from becoming a 502 for a request no node refused:

- the pool drops idle connections sooner than the servers do (`KEEPALIVE_S`), which closes the
  window for the common case;
- a request whose connection closed or was reset before any reply is sent once more on a fresh
  connection, as aiohttp already does for idempotent methods (aiohttp/client.py,
  `retry_persistent_connection`: `except (ClientOSError, ServerDisconnectedError)` retries once,
  while `ClientConnectorError`, nothing listening, is raised at once; aiohttp 3.14.5,
  client.py:900-912). A reset (RST, `[Errno 104]`) is the same race as a clean close when the
  server's close meets a request still being written. Whether the node ran the model first is
  not provable from here, so this is aiohttp's rule, not a proof: an inference has no side
  effects, so it is idempotent in the sense that matters; a model can only run twice if its
  server failed after running it and before replying, and then only once more.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
import orjson
from multidict import CIMultiDict

# Under uvicorn's 5 s keep-alive, so the pool gives a connection up before the server does.
KEEPALIVE_S = 4.0


def node_session() -> aiohttp.ClientSession:
    """The router's one session to every node: no connection cap, idle connections kept 4 s."""
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None, keepalive_timeout=KEEPALIVE_S)
    return aiohttp.ClientSession(
        connector=connector, json_serialize=lambda o: orjson.dumps(o).decode()
    )


@dataclass(frozen=True)
class NodeReply:
    """A node's whole HTTP reply, read before the connection goes back to the pool."""

    status: int
    body: bytes
    headers: CIMultiDict[str]  # case-insensitive, as HTTP header names are
    content_type: str


async def post(
    session: aiohttp.ClientSession,
    url: str,
    data: bytes,
    headers: dict[str, str],
    timeout: aiohttp.ClientTimeout | None = None,
) -> NodeReply:
    """POST `data` to a node, sent once more if the connection closed or was reset before
    any reply; a node that refuses connections is not asked again (aiohttp's rule)."""
    for attempt in (1, 2):
        try:
            resp = await session.post(url, data=data, headers=headers, timeout=timeout)
        except aiohttp.ClientConnectorError:  # a subclass of ClientOSError: never retried
            raise
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            if attempt == 2:
                raise
            continue
        async with resp:  # a reply has begun: never sent again from here
            return NodeReply(
                resp.status, await resp.read(), CIMultiDict(resp.headers), resp.content_type
            )
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
