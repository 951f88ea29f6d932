"""One strict reading of an Open Inference Protocol request, for every way one arrives.

JSON REST, binary REST and gRPC (through MLServer's types) all end in
`tensors.request.InferRequest`, so a bad request gets the same 4xx naming the same input
whichever way it came. Input names resolve through declared aliases, then a client's
convention (`INPUT_IMAGE`, `IMAGE` for `image`); a name given twice is rejected, never
silently overwritten. What is here is the serving side: choosing the outputs asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from infergraph.arrays import Array
from infergraph.errors import InputError
from infergraph.tensors.request import InferRequest


def parse_request(
    body: object, accepted: Sequence[str], aliases: Mapping[str, str] | None = None
) -> InferRequest[Array]:
    """Validate a V2 request dict for one model (`InferRequest.from_json`); `accepted` empty
    means any input name is taken as is."""
    return InferRequest.from_json(body, accepted, aliases)


def select_outputs[T](
    produced: dict[str, T], requested: list[str], declared: Sequence[str] = ()
) -> dict[str, T]:
    """Only the requested outputs, in the order asked, keyed by the name asked for.

    A name resolves as input names do: exactly, else case-insensitively when one output fits
    (Triton clients ask for `EMBEDDING`, the component's `embedding`). A name the model lacks
    is a 400. A declared output this request did not produce (e.g. `text_embedding` for
    images only) is left out rather than refused.
    """
    if not requested:
        return produced
    known = set(produced) | set(declared)
    resolved = {name: _output_name(name, known) for name in requested}
    unknown = [name for name, found in resolved.items() if found is None]
    if unknown:
        raise InputError(
            "outputs",
            f"no output named {', '.join(unknown)}; this model has {', '.join(sorted(known))}",
        )
    return {name: produced[found] for name, found in resolved.items() if found in produced}


def _output_name(asked: str, known: set[str]) -> str | None:
    if asked in known:
        return asked
    matches = [name for name in known if name.lower() == asked.lower()]
    return matches[0] if len(matches) == 1 else None
