"""bench-runtimes' CPU account: py-spy's raw samples split into the serving path's stages."""

from __future__ import annotations

from benchmarks.serving_account import LOOP_ONLY, classify, parse_raw

LOOP = "run (asyncio/runners.py:118);main (mlserver/cli/main.py:40)"


def test_a_response_compressed_on_the_fast_path_counts_as_encode() -> None:
    frames = [
        LOOP,
        "__call__ (/src/infergraph/serving/rest_fast_path.py:101)",
        "_compress (/src/infergraph/serving/rest_fast_path.py:180)",
        "compress (/usr/lib/python3.12/gzip.py:609)",
    ]
    assert classify(frames) == "encode"


def test_the_innermost_claimed_frame_decides_and_roots_decide_nothing() -> None:
    tokenising = [LOOP, "infer (engine.py:80)", "encode_texts (components/text.py:40)"]
    assert classify(tokenising) == "prepare"
    assert classify(LOOP.split(";")) == LOOP_ONLY


def test_raw_lines_are_counted_per_thread() -> None:
    raw = "\n".join(
        [
            f"thread (4242);{LOOP};_compress (rest_fast_path.py:180) 3",
            f"thread (4242);{LOOP};run_batch (src/infergraph/engine.py:90) 2",
            f"thread (4243);{LOOP} 5",
            "process 12;junk 9",
        ]
    )
    threads = parse_raw(raw)
    assert threads == {4242: {"encode": 3, "forward": 2}, 4243: {LOOP_ONLY: 5}}


def test_cores_are_cpu_over_the_wall_time_the_load_really_took() -> None:
    """A window of load lasts until its last request answers, past its nominal seconds:
    bench-runtimes divided by the nominal seconds and reported 5 cores on a 2-core machine
    (SigLIP, where requests took 20 s or more)."""
    import os
    import time

    from benchmarks.serving_account import cores_while

    def load() -> str:
        began = time.process_time()
        while time.process_time() - began < 0.2:
            pass  # 0.2 s of this process's CPU
        time.sleep(0.4)  # then a wait, as for the last responses of a window
        return "done"

    result, cores = cores_while(os.getpid(), load)
    assert result == "done"
    assert 0.05 < cores < 0.45  # 0.2 s of CPU over at least 0.6 s of wall time
