"""The demo's graph server: it runs on the CPUs the priced class has, and its stop signals only
its own processes.

The demo prices the served graph as one instance of a class (a 2-vCPU `c7i.large` by
default). On a machine with more cores than that, the server is pinned to as many CPUs as
the class has vCPUs (the CPUs of as few physical cores as can hold them, as a cloud vCPU is a
hyperthread) and the load generator to the others, so what is measured is what is priced.
A machine with as many cores or fewer is used as it is, and the demo says which it was.

The servers here are real processes with stand-in commands (a server that serves nothing),
so their CPUs and their stop are checked with the kernel's own answers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infergraph.demo.cores import CoreOf, CorePlan, physical_core, pinned, plan_cores
from infergraph.demo.server import GraphServer

CASCADE = Path(__file__).resolve().parent.parent / "k8s" / "graphs" / "cascade.yaml"


def _core_of_smt(cpu: int) -> tuple[int, int]:
    """An 8-CPU, 4-core laptop whose CPU i and i+4 are one core's two hyperthreads."""
    return 0, cpu % 4


def _core_each(cpu: int) -> tuple[int, int]:
    """A machine without hyperthreads: each CPU a core of its own."""
    return 0, cpu


def _plan(cpus: int, vcpus: float, core_of: CoreOf = _core_each) -> CorePlan:
    return plan_cores(range(cpus), "c7i.large", vcpus, core_of)


def test_a_machine_with_more_cores_pins_the_server_to_the_classes_vcpus() -> None:
    plan = _plan(16, 2.0)
    assert plan.server == (0, 1) and plan.load == tuple(range(2, 16)) and plan.pinned
    said = plan.describe()
    assert "the graph server on CPUs 0-1" in said and "the load generator on CPUs 2-15" in said
    assert "16 CPUs" in said and "2 vCPU" in said


def test_the_server_gets_whole_cores_where_the_machine_has_hyperthreads() -> None:
    plan = _plan(8, 2.0, _core_of_smt)
    assert plan.server == (0, 4)  # one core's two threads, as a c7i.large's 2 vCPUs are
    assert plan.load == (1, 2, 3, 5, 6, 7)


def test_a_machine_just_one_core_larger_still_keeps_one_for_the_load() -> None:
    plan = _plan(3, 2.0)
    assert (plan.server, plan.load) == ((0, 1), (2,))


def test_a_machine_with_as_many_cores_as_the_class_is_used_as_it_is() -> None:
    """The 2-core VM and CI: nothing is pinned, and the screen says the load shares them."""
    plan = _plan(2, 2.0)
    assert not plan.pinned and plan.server == plan.load == (0, 1)
    said = plan.describe()
    assert "all 2 of this machine's CPUs" in said and "shares them" in said


def test_this_machines_own_topology_is_read() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    plan = plan_cores(cpus, "c7i.large", 1.0)
    assert set(plan.server) | set(plan.load) == set(cpus)
    assert all(physical_core(cpu)[1] >= 0 for cpu in cpus)


def test_a_machine_with_fewer_cores_than_the_class_says_its_figures_overstate_the_cost() -> None:
    plan = _plan(1, 2.0)
    assert not plan.pinned and plan.server == (0,)
    said = plan.describe()
    assert "fewer than the 2 vCPU" in said and "overstate" in said


CHILD_AND_GRANDCHILD = """
import subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print(grandchild.pid, flush=True)
time.sleep(120)
"""


class StandIn(GraphServer):
    """`infergraph serve`'s place taken by a process that starts a child and waits."""

    script = CHILD_AND_GRANDCHILD

    def command(self) -> list[str]:
        return [sys.executable, "-c", self.script]


def _grandchild(server: GraphServer) -> int:
    assert server.process is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = server.log.read_text()
        if text.strip():
            return int(text.split()[0])
        time.sleep(0.1)
    raise AssertionError("the stand-in server never started its child")


def test_a_pinned_server_and_its_children_run_on_its_cpus_only(tmp_path: Path) -> None:
    ours = os.sched_getaffinity(0)
    cpu = min(ours)
    with StandIn(CASCADE, "tiny", tmp_path / "server.log", cpus=(cpu,)) as server:
        assert server.process is not None
        grandchild = _grandchild(server)
        assert os.sched_getaffinity(server.process.pid) == {cpu}
        assert os.sched_getaffinity(grandchild) == {cpu}
        environ = Path(f"/proc/{server.process.pid}/environ").read_bytes().split(b"\0")
        if "OMP_NUM_THREADS" not in os.environ:
            assert b"OMP_NUM_THREADS=1" in environ
    assert os.sched_getaffinity(0) == ours  # the demo itself is not moved by the spawn


def test_an_unpinned_server_runs_where_the_demo_does(tmp_path: Path) -> None:
    with StandIn(CASCADE, "tiny", tmp_path / "server.log") as server:
        assert server.process is not None
        _grandchild(server)
        assert os.sched_getaffinity(server.process.pid) == os.sched_getaffinity(0)


def test_the_load_generator_is_pinned_only_while_it_measures() -> None:
    ours = os.sched_getaffinity(0)
    with pinned((min(ours),)):
        assert os.sched_getaffinity(0) == {min(ours)}
    assert os.sched_getaffinity(0) == ours
    with pinned(None):
        assert os.sched_getaffinity(0) == ours


def _start_ticks(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


class Exited(GraphServer):
    """A server that has already exited by the time it is stopped."""

    def command(self) -> list[str]:
        return [sys.executable, "-c", "pass"]


def test_stop_never_signals_a_pid_since_taken_by_another_process(tmp_path: Path) -> None:
    """A pid the server's family once had, now another process's (pid reuse), is left alone."""
    unrelated = subprocess.Popen(["sleep", "300"])
    try:
        server = Exited(CASCADE, "tiny", tmp_path / "server.log")
        server.__enter__()
        assert server.process is not None
        server.process.wait()
        server.ready_s = 1.0
        # Seen below the server when a process that has exited since held it:
        server._family[unrelated.pid] = _start_ticks(unrelated.pid) - 1
        started = time.monotonic()
        server.stop()
        assert unrelated.poll() is None, "an unrelated process was signalled"
        assert time.monotonic() - started < 5  # nor waited for
    finally:
        unrelated.kill()
        unrelated.wait()


ORPHANING = """
import signal, subprocess, sys, time
grandchild = subprocess.Popen(
    [sys.executable, "-c",
     "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"],
    start_new_session=True,
)
print(grandchild.pid, flush=True)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
time.sleep(120)
"""


@pytest.mark.slow
def test_stop_still_kills_the_servers_own_orphaned_descendant(tmp_path: Path) -> None:
    """What the family is for: MLServer in a session of its own, outliving the server."""

    class Orphaning(StandIn):
        script = ORPHANING

    with Orphaning(CASCADE, "tiny", tmp_path / "server.log") as server:
        grandchild = _grandchild(server)
        server.ready_s = 1.0
    deadline = time.monotonic() + 5
    while Path(f"/proc/{grandchild}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # the grandchild is init's now: reaped once killed
    alive = Path(f"/proc/{grandchild}").exists()
    if alive:
        os.kill(grandchild, signal.SIGKILL)
    assert not alive
