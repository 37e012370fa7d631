"""The soak run at a small size: no job is lost through worker crashes and duplicate deliveries."""

from __future__ import annotations

import pytest

from bench.soak import Options, soak

pytestmark = pytest.mark.e2e


def test_no_job_is_lost_while_workers_crash_and_messages_repeat() -> None:
    report = soak(Options(jobs=60, clients=8, workers=2, kill_every_s=2.0, duplicate_rate=0.1, job_deadline_s=120))

    assert (report.submitted, report.refused, report.lost) == (60, 0, 0)
    assert report.completed + report.failed == 60
    assert report.worker_kills >= 1


def test_duplicate_deliveries_alone_never_call_the_provider_twice() -> None:
    report = soak(Options(jobs=60, clients=8, workers=2, kill_every_s=0, duplicate_rate=0.5, job_deadline_s=120))

    assert (report.submitted, report.lost) == (60, 0)
    assert report.completed == 60
    assert report.duplicated_provider_calls == 0
