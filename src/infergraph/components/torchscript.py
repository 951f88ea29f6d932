"""A transformer encoder traced to TorchScript, so its forward pass runs without the GIL.

Why: in a server, the event-loop thread (HTTP parsing, JSON, the batcher's bookkeeping)
and the forward thread share the GIL. An eager PyTorch module takes the GIL back between
operators, hundreds of times per pass for a six-layer BERT, and each time it may wait
behind the loop. A traced module runs its whole graph in TorchScript's interpreter and
holds the GIL only to enter and leave. all-MiniLM-L6-v2, batch 32, two threads, on the
2-core development machine: 78-80 ms a pass against 83-85 eager when alone, and
220-233 ms against 695-881 eager beside a busy pure-Python thread.

A trace records the single path the Python code took for its example, so a model whose
control flow depends on values could be traced wrongly: `trace_encoder` therefore checks
the traced module against the eager one on batches of other shapes than the example's and
gives up (returning why) when they disagree or when tracing fails. TorchScript is
deprecated upstream in favour of torch.export; while it still ships, this is the cheapest
way to a GIL-free pass, and a torch without it falls back to the eager module.

Only the text encoder is traced. A traced ResNet-18 on one core served batch-1 passes at
half load in a mean 52 ms against 56 eager an hour earlier, inside this machine's
run-to-run spread: a network of a few dozen large kernels seldom waits on the GIL.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from transformers.modeling_outputs import BaseModelOutput

from infergraph.components.parameters import as_bool
from infergraph.errors import InputError, SettingsError

# Largest absolute difference between traced and eager outputs still taken as the same.
TOLERANCE = 1e-4


def wanted(options: Mapping[str, object], device: torch.device) -> bool:
    """The `torchscript` option: true by default on CPU, where it was measured; else false."""
    value = options.get("torchscript", device.type == "cpu")
    try:
        return as_bool(value, "torchscript")
    except InputError:
        raise SettingsError("torchscript", f"{value!r} is not true or false") from None


class _Positional(nn.Module):
    """The encoder called with its inputs in a fixed order (a trace takes positional tensors)."""

    def __init__(self, encoder: nn.Module, keys: tuple[str, ...]) -> None:
        super().__init__()
        self.encoder = encoder
        self.keys = keys

    def forward(self, *tensors: Tensor) -> Tensor:
        features = dict(zip(self.keys, tensors, strict=True))
        return self.encoder(**features, return_dict=True).last_hidden_state


class TracedEncoder(nn.Module):
    """Stands in for a Hugging Face encoder: same keyword inputs, same `last_hidden_state`."""

    def __init__(self, traced: torch.jit.ScriptModule, keys: tuple[str, ...], eager: nn.Module):
        super().__init__()
        self.traced = traced
        self.keys = keys
        # Callers read the eager model's config (hidden size, output_hidden_states).
        self.config = eager.config

    def forward(self, **features: Tensor) -> BaseModelOutput:
        hidden = self.traced(*(features[key] for key in self.keys))
        return BaseModelOutput(last_hidden_state=hidden)


def encoder_keys(encoder: nn.Module, features: dict[str, Tensor]) -> tuple[str, ...]:
    """The tokenizer's outputs that the encoder's forward takes, in the tokenizer's order."""
    accepted = inspect.signature(encoder.forward).parameters
    return tuple(key for key in features if key in accepted)


def trace_encoder(
    encoder: nn.Module, example: dict[str, Tensor], checks: Sequence[dict[str, Tensor]]
) -> tuple[TracedEncoder | None, str]:
    """The encoder traced on `example` and checked on `checks`; else None and the reason."""
    keys = encoder_keys(encoder, example)
    traced, why = trace_checked(
        _Positional(encoder, keys),
        tuple(example[k] for k in keys),
        [tuple(features[k] for k in keys) for features in checks],
    )
    return (TracedEncoder(traced, keys, encoder) if traced is not None else None), why


def trace_checked(
    module: nn.Module, example: tuple[Tensor, ...], checks: Sequence[tuple[Tensor, ...]]
) -> tuple[torch.jit.ScriptModule | None, str]:
    """`module(*tensors) -> Tensor` traced, if it agrees with eager on every check."""
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            # The tracer warns at every Python branch it freezes; the checks below judge them.
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(module, example, check_trace=False)
    except Exception as exc:  # any failure to trace means: stay eager
        return None, f"tracing failed: {type(exc).__name__}: {exc}"
    for tensors in checks:
        with torch.inference_mode():
            expected, actual = module(*tensors), traced(*tensors)
        difference = _difference(expected, actual)
        if difference > TOLERANCE:
            shape = tuple(tensors[0].shape)
            return None, f"traced output differs from eager by {difference:.2g} at shape {shape}"
    return traced, "traced"


def _difference(expected: Tensor, actual: Tensor) -> float:
    if expected.shape != actual.shape:
        return float("inf")
    return float((expected.float() - actual.float()).abs().max())
