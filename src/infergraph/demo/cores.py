"""Which CPUs the graph server and the load generator get, so the work matches its price.

The demo prices what it serves as one instance of a class (`--hardware`, a 2-vCPU
`c7i.large` by default). Torch's forward threads follow the CPUs a process may run on, so
on a 16-core laptop an unpinned server would use all 16 and every $/million would come out
several times too cheap. When the machine has more CPUs than the class has vCPUs, the graph
server (and every process it starts, which inherit it) is pinned to as many CPUs as the
class has vCPUs, and the load generator to the others. A cloud vCPU is one hyperthread, so
the server gets the CPUs of as few physical cores as hold them (a `c7i.large` is one core's
two threads). A machine with as many CPUs as the class, or fewer, is used as it is, and the
demo says so: with fewer, its figures are for less than one instance and overstate the cost.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CoreOf = Callable[[int], tuple[int, int]]  # CPU -> (package, core) it is a thread of


def physical_core(cpu: int) -> tuple[int, int]:
    """The (package, core) a CPU is a hardware thread of, per the kernel's topology; a CPU
    the kernel gives none for counts as a core of its own."""
    topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
    try:
        package = int((topology / "physical_package_id").read_text())
        core = int((topology / "core_id").read_text())
    except (OSError, ValueError):
        return -1, cpu
    return package, core


@dataclass(frozen=True)
class CorePlan:
    """The CPUs this demo may use, and those its graph server and load generator get."""

    machine: tuple[int, ...]
    server: tuple[int, ...]
    load: tuple[int, ...]
    hardware: str
    vcpus: float

    @property
    def pinned(self) -> bool:
        return self.server != self.machine

    def short(self) -> str:
        """The summary screen's few words on it."""
        if self.pinned:
            return f"served on CPUs {cpu_list(self.server)} of this machine's {len(self.machine)}"
        if len(self.machine) < self.vcpus:
            return f"on {len(self.machine)} CPU(s), fewer than it has vCPUs: costs overstated"
        return f"on this machine's {len(self.machine)} CPUs"

    def describe(self) -> str:
        """One sentence for the screen: which CPUs each got, and what that means for the price."""
        total = len(self.machine)
        if self.pinned:
            return (
                f"this machine has {total} CPUs: the graph server on CPUs "
                f"{cpu_list(self.server)} (a {self.hardware} has {self.vcpus:g} vCPU), the "
                f"load generator on CPUs {cpu_list(self.load)}"
            )
        if total < self.vcpus:
            return (
                f"this machine has {total} CPU{'s' if total > 1 else ''}, fewer than the "
                f"{self.vcpus:g} vCPU of a {self.hardware}: the graph serves less than one "
                "would, so the figures here overstate its $/million; the load generator "
                "shares them"
            )
        return (
            f"served on all {total} of this machine's CPUs, as many as a {self.hardware} has "
            "vCPUs; the load generator shares them"
        )


def plan_cores(
    available: Iterable[int], hardware: str, vcpus: float, core_of: CoreOf = physical_core
) -> CorePlan:
    """The server's CPUs: as many as the class has vCPUs, whole physical cores first, when
    the machine has at least one more for the load generator; else every CPU for both."""
    machine = tuple(sorted(available))
    wanted = max(1, math.ceil(vcpus - 1e-9))
    if len(machine) <= wanted:
        return CorePlan(machine, machine, machine, hardware, vcpus)
    by_core: dict[tuple[int, int], list[int]] = {}
    for cpu in machine:
        by_core.setdefault(core_of(cpu), []).append(cpu)
    ordered = [cpu for core in sorted(by_core) for cpu in by_core[core]]
    server = tuple(sorted(ordered[:wanted]))
    load = tuple(cpu for cpu in machine if cpu not in server)
    return CorePlan(machine, server, load, hardware, vcpus)


def cpu_list(cpus: Iterable[int]) -> str:
    """CPUs as `taskset -c` writes them: 0-3,8,10-11."""
    spans: list[list[int]] = []
    for cpu in sorted(cpus):
        if spans and cpu == spans[-1][1] + 1:
            spans[-1][1] = cpu
        else:
            spans.append([cpu, cpu])
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans)


@contextmanager
def pinned(cpus: Iterable[int] | None) -> Iterator[None]:
    """Within the block the calling thread, and every thread or process it starts, runs on
    `cpus` only (None: wherever it ran); its CPUs are given back after."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(cpus))
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
