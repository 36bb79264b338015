"""Warm schedules and prewarm floors, on fixed local times."""

from __future__ import annotations

from datetime import datetime

import pytest
from pydantic import ValidationError

from zeroserve.scaling.warm import in_window, warm_target
from zeroserve.spec import ScalingPolicy, WarmWindow

TUE_0900 = datetime(2026, 11, 24, 9, 0)  # a Tuesday
OFFICE = WarmWindow(days="mon-fri", start="08:00", end="18:00", min_instances=2)
NIGHT = WarmWindow(days="fri", start="22:00", end="02:00", min_instances=3)


@pytest.mark.parametrize(
    ("window", "when", "expected"),
    [
        (OFFICE, TUE_0900, True),
        (OFFICE, datetime(2026, 11, 24, 18, 0), False),  # end is exclusive
        (OFFICE, datetime(2026, 11, 28, 9, 0), False),  # Saturday
        (NIGHT, datetime(2026, 11, 27, 23, 0), True),  # Friday night
        (NIGHT, datetime(2026, 11, 28, 1, 0), True),  # ... past midnight, into Saturday
        (NIGHT, datetime(2026, 11, 29, 1, 0), False),  # Sunday 01:00: Saturday is not named
        (WarmWindow(days="sat,sun", start="10:00", end="11:00", min_instances=1),
         datetime(2026, 11, 29, 10, 30), True),
        (WarmWindow(days="fri-mon", start="10:00", end="11:00", min_instances=1),
         datetime(2026, 11, 29, 10, 30), True),  # a day range across the week's end
    ],
)  # fmt: skip
def test_in_window(window: WarmWindow, when: datetime, expected: bool) -> None:
    assert in_window(window, when) is expected


def test_warm_target_takes_the_most_of_min_schedule_and_prewarm() -> None:
    assert warm_target(0, [OFFICE], TUE_0900) == 2
    assert warm_target(0, [OFFICE], datetime(2026, 11, 28, 9, 0)) == 0
    assert warm_target(1, [OFFICE], datetime(2026, 11, 28, 9, 0)) == 1
    assert warm_target(0, [OFFICE], TUE_0900, prewarm=5, prewarm_until=10.0, now=9.9) == 5
    assert warm_target(0, [OFFICE], TUE_0900, prewarm=5, prewarm_until=10.0, now=10.0) == 2


def test_windows_are_validated() -> None:
    with pytest.raises(ValidationError, match="days"):
        WarmWindow(days="monday", start="08:00", end="18:00", min_instances=1)
    with pytest.raises(ValidationError, match="start"):
        WarmWindow(start="8am", end="18:00", min_instances=1)
    with pytest.raises(ValidationError, match="must be <= max_instances = 2"):
        ScalingPolicy(max_instances=2, warm=[OFFICE.model_copy(update={"min_instances": 3})])
