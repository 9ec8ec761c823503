"""Progress reports are throttled: every stage change and the final 100 % go out, steps within a
stage at most every `min_interval` seconds."""

from __future__ import annotations

from app.worker.base import ProgressThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_steps_within_a_stage_are_dropped_until_the_interval_passes():
    clock, sent = Clock(), []
    progress = ProgressThrottle(lambda percent, stage: sent.append((percent, stage)), min_interval=0.5, clock=clock)
    for percent in range(10, 20):
        progress(percent, "checking")
        clock.now += 0.1
    assert sent == [(10, "checking"), (15, "checking")]


def test_a_new_stage_and_the_final_step_always_go_out():
    clock, sent = Clock(), []
    progress = ProgressThrottle(lambda percent, stage: sent.append((percent, stage)), min_interval=60, clock=clock)
    progress(5, "reading")
    progress(6, "reading")
    progress(40, "checking")
    progress(99, "checking")
    progress(100, "checking")
    assert sent == [(5, "reading"), (40, "checking"), (100, "checking")]
