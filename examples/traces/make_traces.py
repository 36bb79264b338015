"""Write the two example traces (deterministic: a fixed seed), for `zeroserve simulate`:

diurnal.csv  one day: a rate that follows the sun, 0.005 req/s at night to 0.3 at noon
spiky.csv    six idle hours with three short spikes (30 s at 40 req/s)
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent


def poisson(
    rng: random.Random, rate_at: Callable[[float], float], start: float, end: float, peak: float
) -> list[float]:
    """Arrival times of a Poisson process with a time-varying rate (thinning)."""
    times: list[float] = []
    t = start
    while True:
        t += rng.expovariate(peak)
        if t >= end:
            return times
        if rng.random() < rate_at(t) / peak:
            times.append(t)


def write(path: Path, times: list[float]) -> None:
    path.write_text("arrival_s\n" + "".join(f"{t:.3f}\n" for t in times))
    print(f"wrote {path} ({len(times)} requests)")


if __name__ == "__main__":
    rng = random.Random(7)
    day = 24 * 3600.0

    def diurnal(t: float) -> float:
        return 0.005 + 0.295 * max(0.0, math.sin(math.pi * (t / day * 24 - 6) / 12)) ** 2

    write(HERE / "diurnal.csv", poisson(rng, diurnal, 0.0, day, 0.3))
    spikes = [3600.0, 3 * 3600.0 + 1200.0, 5 * 3600.0 + 600.0]

    def spiky(t: float) -> float:
        return 40.0 if any(s <= t < s + 30 for s in spikes) else 0.0

    write(HERE / "spiky.csv", poisson(rng, spiky, 0.0, 6 * 3600.0, 40.0))
