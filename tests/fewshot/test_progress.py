"""attnmeta.fewshot.progress: the command line's progress lines carry the time left, at
least every PROGRESS_SECONDS, and short work prints none."""

from __future__ import annotations

from attnmeta.fewshot.progress import PROGRESS_SECONDS, ProgressLines


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_lines_come_every_few_seconds_with_the_time_left():
    clock, said = FakeClock(), []
    lines = ProgressLines(True, clock=clock, echo=said.append)
    report = lines.counter("predicted")
    for done in range(64, 3001, 64):  # a chunk a second
        clock.now += 1.0
        report(min(done, 3000), 3000)
    clock.now += 0.5
    report(3000, 3000)
    middle, last = said[:-1], said[-1]
    # a line every PROGRESS_SECONDS of the 46 s, each with the time left at the rate since
    # the first call (64 a second)
    assert len(middle) == int(46 // PROGRESS_SECONDS)
    assert middle[0] == "predicted 128/3000 (4%), about 45 s left"
    assert middle[-1] == "predicted 2944/3000 (98%), about 1 s left"
    assert last == "predicted 3000/3000 (45.5 s)"

    # the default of predict: silent for short work, lines once it runs long
    said.clear()
    quiet = ProgressLines(None, clock=clock, echo=said.append)
    short = quiet.counter("predicted")
    clock.now += 0.5
    short(64, 100)
    clock.now += 0.5
    short(100, 100)
    assert said == []
    long = ProgressLines(None, clock=clock, echo=said.append).counter("predicted")
    for done in (64, 128, 192, 256):
        clock.now += 1.5
        long(done, 256)
    assert said == ["predicted 128/256 (50%), about 3 s left", "predicted 256/256 (4.5 s)"]
    assert ProgressLines(False).counter("predicted") is None
