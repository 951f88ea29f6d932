"""The tester's fold of latencies into HDR histograms (recorder.record_bulk).

The fold runs on the tester's event loop every 50 ms, and no send goes out while it runs:
hdrh's own `record_value` (pure Python, about 1 us a distinct value) held the loop for
1.9 ms a histogram at 32,000 requests/s, which delayed about one send in eight. The fold
now computes hdrh's bucket indices for the whole batch at once; it must fill exactly the
counts hdrh's own recording fills, so encoded histograms merge and read as before.
"""

from __future__ import annotations

import numpy as np
from async_load_tester.recorder import HIGHEST_US, LOWEST_US, new_histogram, record_bulk
from hdrh.histogram import HdrHistogram


def _recorded_one_by_one(values: list[int]) -> HdrHistogram:
    hist = new_histogram()
    for value in values:
        hist.record_value(min(max(value, LOWEST_US), HIGHEST_US))
    return hist


def test_the_fold_fills_exactly_what_hdrh_records_value_by_value() -> None:
    rng = np.random.default_rng(7)
    values = np.concatenate(
        [
            (20_000 * np.exp(0.5 * rng.standard_normal(5_000))).astype(np.int64),
            rng.integers(0, 4_096, 2_000),  # the first, unit-resolution buckets
            10 ** rng.uniform(3, 9.5, 2_000),  # every bucket up to the hour's ceiling
            np.array([0, -5, 1, 2_047, 2_048, 2_049, HIGHEST_US, HIGHEST_US + 10**9]),
        ]
    ).astype(np.int64)
    folded = new_histogram()
    for part in np.array_split(values, 7):  # several folds into one histogram
        record_bulk(folded, part.tolist())
    expected = _recorded_one_by_one(values.tolist())
    assert list(folded.counts) == list(expected.counts)
    assert folded.get_total_count() == expected.get_total_count() == len(values)
    assert folded.get_min_value() == expected.get_min_value()
    assert folded.get_max_value() == expected.get_max_value()
    for q in (50.0, 99.0, 99.9, 100.0):
        assert folded.get_value_at_percentile(q) == expected.get_value_at_percentile(q)
    assert folded.encode() == expected.encode()


def test_an_empty_fold_leaves_the_histogram_as_it_was() -> None:
    hist = new_histogram()
    record_bulk(hist, [])
    assert hist.get_total_count() == 0
