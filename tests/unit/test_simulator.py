"""The simulator replays traces through the scaling decisions on a virtual clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from zeroserve.scaling.simulator import Arrival, read_trace, simulate
from zeroserve.spec import ScalingPolicy

POLICY = ScalingPolicy(max_instances=3, concurrency=2, idle_timeout_s=10)


def test_one_request_costs_one_cold_start_and_an_idle_timeout() -> None:
    report = simulate([Arrival(0.0)], POLICY, start_s=0.1, service_s=0.01)
    assert report.cold_starts == 1
    assert report.queue_delays_s == pytest.approx([0.1])  # it waited for the start
    # Up from 0 to the first tick at or after 10 s of idleness (ticks every 1 s).
    assert report.instance_seconds == pytest.approx(11.0)
    assert report.gb_seconds == pytest.approx(11.0 * 0.5)


def test_bursts_apart_by_more_than_the_idle_timeout_start_cold_each_time() -> None:
    trace = [Arrival(t) for t in (0.0, 0.2, 30.0, 30.2, 60.0)]
    report = simulate(trace, POLICY, start_s=0.05, service_s=0.01)
    assert report.cold_starts == 3
    assert report.peak_instances == 1


def test_a_burst_scales_out_to_the_ceiling_and_queues_the_rest() -> None:
    trace = [Arrival(0.0, service_s=1.0) for _ in range(12)]
    report = simulate(trace, POLICY, start_s=0.1, service_s=1.0)
    assert report.peak_instances == 3  # max_instances
    assert report.cold_starts == 3
    assert max(report.queue_delays_s) == pytest.approx(0.1 + 1.0)  # the second wave


def test_min_instances_stay_up_for_the_whole_trace() -> None:
    warm = POLICY.model_copy(update={"min_instances": 1})
    report = simulate([Arrival(5.0)], warm, start_s=0.1, service_s=0.01)
    assert report.queue_delays_s == [0.0]  # served by the warm instance
    assert report.instance_seconds > 5.0


def test_trace_files(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("arrival_s,service_s\n2.5,0.1\n1.0\n")
    assert read_trace(path) == [Arrival(1.0, None), Arrival(2.5, 0.1)]
    path.write_text("arrival_s\n1.0\nsoon\n")
    with pytest.raises(ValueError, match="'soon' is not a number"):
        read_trace(path)
