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
