"""Ray Serve model composition: four identity deployments called in turn through handles.

The counterpart of a 4-node identity chain on the local graph router: every hop is a call to
another deployment (another replica actor), as a Ray Serve user composes models.
"""

from __future__ import annotations

import os
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request


@serve.deployment(max_ongoing_requests=256, ray_actor_options={"num_cpus": 0})
class Identity:
    async def __call__(self, tensor: dict[str, Any]) -> dict[str, Any]:
        return tensor


@serve.deployment(max_ongoing_requests=256, ray_actor_options={"num_cpus": 0})
class Chain:
    def __init__(self, *hops: DeploymentHandle) -> None:
        self.hops = hops

    async def __call__(self, request: Request) -> dict[str, Any]:
        body = await request.json()
        tensor = body["inputs"][0]
        for hop in self.hops:
            tensor = await hop.remote(tensor)
        return {"outputs": [tensor]}


def main() -> None:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": int(os.environ["PEER_PORT"])})
    hops = [Identity.options(name=f"hop{i}").bind() for i in range(4)]
    serve.run(Chain.bind(*hops), route_prefix="/chain", blocking=True)


if __name__ == "__main__":
    main()
