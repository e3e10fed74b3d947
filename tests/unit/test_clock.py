"""The virtual clock and the job scheduler: time moves only when told, jobs run once."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.clock import (
    CST,
    ClockMode,
    VirtualClock,
    from_us,
    parse_datetime,
    parse_duration,
    to_us,
)
from simulator.events import list_events
from simulator.scheduler import Job, Scheduler
from simulator.store import Store

START = datetime(2026, 11, 23, 9, 0, tzinfo=CST)
MANUAL = ClockMode.parse("manual")


class FakeWall:
    """A wall clock the test moves by hand."""

    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Crash(BaseException):
    """Stands in for the process dying mid-job: not an Exception, so nothing catches it."""


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store.open(None)
    yield s
    s.close()


def make(store: Store, mode: ClockMode = MANUAL, *, cutover: time = time(0, 0),
         wall: FakeWall | None = None, start: datetime = START
         ) -> tuple[VirtualClock, Scheduler]:
    clock = VirtualClock(store, start=start, mode=mode, cutover=cutover,
                         wall=wall or FakeWall())
    return clock, Scheduler(store, clock)


def recorder(clock: VirtualClock, log: list[tuple[int, datetime]]) -> Callable[[Job], None]:
    def handler(job: Job) -> None:
        log.append((job.id, clock.now()))
    return handler


def at(hh: int, mm: int = 0, day: int = 23) -> datetime:
    return datetime(2026, 11, day, hh, mm, tzinfo=CST)


# -- conversions and parsing ---------------------------------------------------------


def test_us_round_trip_is_exact_and_in_cst() -> None:
    dt = datetime(2026, 11, 23, 23, 59, 59, 999_999, tzinfo=CST)
    assert from_us(to_us(dt)) == dt
    assert from_us(to_us(dt)).tzinfo is CST
    assert to_us(datetime(1970, 1, 1, 8, 0, tzinfo=CST)) == 0
    assert from_us(0) == datetime(1970, 1, 1, 8, 0, tzinfo=CST)


def test_naive_datetimes_are_refused_by_to_us() -> None:
    with pytest.raises(ValueError, match="naive"):
        to_us(datetime(2026, 11, 23, 9, 0))


def test_parse_datetime_naive_is_cst_and_offsets_convert() -> None:
    assert parse_datetime("2026-11-23T09:00") == START
    assert parse_datetime("2026-11-23T09:00:00+08:00") == START
    utc = parse_datetime("2026-11-23T01:00:00Z")
    assert utc == START and utc.tzinfo is CST and utc.hour == 9
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_datetime("23/11/2026 09:00")


@pytest.mark.parametrize(("text", "expected"), [
    ("90s", timedelta(seconds=90)),
    ("20m", timedelta(minutes=20)),
    ("1h30m", timedelta(hours=1, minutes=30)),
    ("2d", timedelta(days=2)),
    ("1d2h", timedelta(days=1, hours=2)),
    ("PT20M", timedelta(minutes=20)),
    ("pt1h30m", timedelta(hours=1, minutes=30)),
    ("P1DT2H", timedelta(days=1, hours=2)),
    ("P2D", timedelta(days=2)),
])
def test_parse_duration_accepts(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "5", "abc", "-5m", "1.5h", "30m1h", "P", "PT", "P1DT",
                                  "1 h", "P1M"])
def test_parse_duration_refuses_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["0s", "0m0s", "PT0S"])
def test_parse_duration_refuses_zero(text: str) -> None:
    with pytest.raises(ValueError, match="positive"):
        parse_duration(text)


def test_clock_mode_parse_and_str_round_trip() -> None:
    assert ClockMode.parse("manual") == ClockMode("manual", 0.0)
    assert ClockMode.parse("realtime") == ClockMode("realtime", 1.0)
    assert ClockMode.parse("accelerated:60") == ClockMode("accelerated", 60.0)
    for text in ("manual", "realtime", "accelerated:60", "accelerated:0.5"):
        assert str(ClockMode.parse(text)) == text


@pytest.mark.parametrize("text", ["", "fast", "accelerated", "accelerated:", "accelerated:0",
                                  "accelerated:-2", "accelerated:x", "accelerated:inf",
                                  "accelerated:nan", "realtime:2"])
def test_clock_mode_parse_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not a clock mode"):
        ClockMode.parse(text)


def test_clock_mode_factor_must_match_kind() -> None:
    with pytest.raises(ValueError):
        ClockMode("manual", 1.0)
    with pytest.raises(ValueError):
        ClockMode("accelerated", 0.0)


# -- the clock ----------------------------------------------------------------------


def test_manual_time_stands_still(store: Store) -> None:
    wall = FakeWall()
    clock, _ = make(store, wall=wall)
    assert clock.now() == START and clock.now().tzinfo is CST
    wall.t += 3600
    assert clock.now() == START
    assert clock.now_us() == to_us(START)
    assert clock.mode == MANUAL and clock.cutover == time(0, 0)


def test_realtime_and_accelerated_follow_the_fake_wall(store: Store) -> None:
    wall = FakeWall()
    clock, _ = make(store, ClockMode.parse("realtime"), wall=wall)
    wall.t += 10
    assert clock.now() == START + timedelta(seconds=10)
    clock.set_mode(ClockMode.parse("accelerated:60"))
    assert clock.now() == START + timedelta(seconds=10)
    wall.t += 10
    assert clock.now() == START + timedelta(seconds=610)


def test_accelerated_from_the_start(store: Store) -> None:
    wall = FakeWall()
    clock, _ = make(store, ClockMode.parse("accelerated:60"), wall=wall)
    wall.t += 10
    assert clock.now() == START + timedelta(minutes=10)


def test_mode_switching_is_continuous(store: Store) -> None:
    wall = FakeWall()
    clock, _ = make(store, ClockMode.parse("accelerated:60"), wall=wall)
    wall.t += 1
    before = clock.now()
    assert before == START + timedelta(minutes=1)
    clock.set_mode(MANUAL)
    assert clock.now() == before
    wall.t += 1000
    assert clock.now() == before  # manual again: the wall no longer matters
    clock.set_mode(ClockMode.parse("realtime"))
    assert clock.now() == before
    wall.t += 5
    assert clock.now() == before + timedelta(seconds=5)
    assert store.get_kv("clock.mode") == "realtime"


def test_time_handed_out_never_goes_back_when_the_wall_does(store: Store) -> None:
    wall = FakeWall()
    clock, _ = make(store, ClockMode.parse("realtime"), wall=wall)
    wall.t += 100
    seen = clock.now()
    wall.t -= 50
    assert clock.now() == seen


def test_move_to_refuses_to_go_backwards_and_reset_goes_back(store: Store) -> None:
    clock, _ = make(store)
    clock._move_to(at(10))
    with pytest.raises(ValueError, match="backwards"):
        clock._move_to(at(9, 30))
    assert clock.now() == at(10)
    clock.reset(START)
    assert clock.now() == START
    assert store.get_kv("clock.virtual_us") == str(to_us(START))


def test_move_to_in_accelerated_mode_jumps_ahead_and_keeps_running(store: Store) -> None:
    wall = FakeWall()
    clock, _ = make(store, ClockMode.parse("accelerated:60"), wall=wall)
    clock._move_to(at(12))
    assert clock.now() == at(12)
    wall.t += 1
    assert clock.now() == at(12, 1)


def test_restart_keeps_manual_time(tmp_path: Path) -> None:
    path = tmp_path / "bank.db"
    store = Store.open(path)
    clock, scheduler = make(store)
    scheduler.advance(timedelta(hours=5))
    store.close()
    store = Store.open(path)
    # A different start is ignored: the persisted clock wins.
    clock, _ = make(store, start=datetime(2030, 1, 1, tzinfo=CST))
    assert clock.now() == START + timedelta(hours=5)
    store.close()


def test_restart_continues_accelerated_time_including_downtime(tmp_path: Path) -> None:
    path = tmp_path / "bank.db"
    wall = FakeWall()
    store = Store.open(path)
    clock, _ = make(store, ClockMode.parse("accelerated:60"), wall=wall)
    wall.t += 10
    assert clock.now() == START + timedelta(minutes=10)
    store.close()
    wall.t += 20  # the bank was down for 20 wall seconds; virtual time kept running
    store = Store.open(path)
    clock, _ = make(store, MANUAL, wall=wall, start=datetime(2030, 1, 1, tzinfo=CST))
    assert clock.mode == ClockMode.parse("accelerated:60")
    assert clock.now() == START + timedelta(minutes=30)
    wall.t += 1
    assert clock.now() == START + timedelta(minutes=31)
    store.close()


def test_restart_after_set_mode_keeps_the_new_anchor(tmp_path: Path) -> None:
    path = tmp_path / "bank.db"
    wall = FakeWall()
    store = Store.open(path)
    clock, _ = make(store, ClockMode.parse("realtime"), wall=wall)
    wall.t += 30
    clock.set_mode(ClockMode.parse("accelerated:2"))
    wall.t += 10
    expected = START + timedelta(seconds=50)
    assert clock.now() == expected
    store.close()
    store = Store.open(path)
    clock, _ = make(store, wall=wall)
    assert clock.now() == expected
    store.close()


@pytest.mark.parametrize(("cutover", "moment", "expected"), [
    (time(0, 0), at(0, 0), date(2026, 11, 23)),
    (time(0, 0), datetime(2026, 11, 22, 23, 59, 59, 999_999, tzinfo=CST), date(2026, 11, 22)),
    (time(0, 0), at(23, 59), date(2026, 11, 23)),
    (time(23, 0), at(22, 59), date(2026, 11, 23)),
    (time(23, 0), datetime(2026, 11, 23, 22, 59, 59, 999_999, tzinfo=CST), date(2026, 11, 23)),
    (time(23, 0), at(23, 0), date(2026, 11, 24)),
    (time(23, 0), at(23, 30), date(2026, 11, 24)),
    (time(23, 0), at(0, 0, day=24), date(2026, 11, 24)),
    (time(2, 0), at(1, 59, day=24), date(2026, 11, 23)),
    (time(2, 0), at(0, 0, day=24), date(2026, 11, 23)),
    (time(2, 0), at(2, 0, day=24), date(2026, 11, 24)),
    (time(2, 0), at(23, 0), date(2026, 11, 23)),
    (time(12, 0), at(12, 0), date(2026, 11, 24)),
    (time(12, 0), at(11, 59), date(2026, 11, 23)),
])
def test_business_date(store: Store, cutover: time, moment: datetime, expected: date) -> None:
    clock, _ = make(store, cutover=cutover)
    assert clock.business_date(moment) == expected


def test_business_date_converts_other_offsets_to_cst(store: Store) -> None:
    clock, _ = make(store, cutover=time(23, 0))
    # 15:30 UTC is 23:30 CST: already the next business date.
    assert clock.business_date(parse_datetime("2026-11-23T15:30:00Z")) == date(2026, 11, 24)


def test_business_date_defaults_to_now(store: Store) -> None:
    clock, scheduler = make(store, cutover=time(23, 0))
    assert clock.business_date() == date(2026, 11, 23)
    scheduler.advance_to(at(23))
    assert clock.business_date() == date(2026, 11, 24)


@pytest.mark.parametrize(("cutover", "after", "expected"), [
    (time(0, 0), at(9), at(0, 0, day=24)),
    (time(0, 0), at(0, 0), at(0, 0, day=24)),
    (time(0, 0), datetime(2026, 11, 23, 23, 59, 59, 999_999, tzinfo=CST), at(0, 0, day=24)),
    (time(23, 0), at(9), at(23)),
    (time(23, 0), at(23), at(23, 0, day=24)),
    (time(23, 0), at(23, 30), at(23, 0, day=24)),
    (time(2, 0), at(1, 0), at(2)),
    (time(2, 0), at(2, 0), at(2, 0, day=24)),
    (time(2, 0), at(9), at(2, 0, day=24)),
])
def test_next_cutover(store: Store, cutover: time, after: datetime, expected: datetime) -> None:
    clock, _ = make(store, cutover=cutover)
    result = clock.next_cutover(after)
    assert result == expected and result.tzinfo is CST
    # It really is where the business date changes, and nothing changes before it.
    tick = timedelta(microseconds=1)
    assert clock.business_date(result) == clock.business_date(result - tick) + timedelta(days=1)
    assert clock.business_date(result - tick) == clock.business_date(after)


def test_next_cutover_defaults_to_now(store: Store) -> None:
    clock, _ = make(store, cutover=time(23, 0))
    assert clock.next_cutover() == at(23)


# -- the scheduler ------------------------------------------------------------------


def test_advance_runs_due_jobs_in_time_order_exactly_once(store: Store) -> None:
    clock, scheduler = make(store)
    ran: list[tuple[int, datetime]] = []
    scheduler.register("note", recorder(clock, ran))
    late = scheduler.schedule("note", at(11))
    early = scheduler.schedule("note", at(10))
    later = scheduler.schedule("note", at(13))

    done = scheduler.advance(timedelta(hours=3))
    assert [(j.id, j.state) for j in done] == [(early, "done"), (late, "done")]
    assert ran == [(early, at(10)), (late, at(11))]  # each handler saw its due time as now
    assert clock.now() == at(12)
    assert [j.id for j in scheduler.pending()] == [later]

    assert scheduler.advance(timedelta(minutes=30)) == []
    assert scheduler.advance_to(at(14)) != []
    assert ran[-1] == (later, at(13))
    assert len(ran) == 3 and scheduler.pending() == []
    job = scheduler.job(early)
    assert job is not None and job.state == "done" and job.ran_at == at(10)
    assert [e["ref"] for e in list_events(store, kind="job.done")] == [
        str(early), str(late), str(later)
    ]


def test_jobs_scheduled_by_handlers_inside_the_window_run_in_order(store: Store) -> None:
    clock, scheduler = make(store)
    ran: list[tuple[str, datetime]] = []

    def chain(job: Job) -> None:
        ran.append((job.payload["name"], clock.now()))
        if job.payload["name"] == "a":
            scheduler.schedule("chain", clock.now() + timedelta(minutes=30), {"name": "a2"})
            scheduler.schedule("chain", clock.now() + timedelta(hours=5), {"name": "too-late"})

    scheduler.register("chain", chain)
    scheduler.schedule("chain", at(10), {"name": "a"})
    scheduler.schedule("chain", at(11), {"name": "b"})
    scheduler.advance_to(at(12))
    assert ran == [("a", at(10)), ("a2", at(10, 30)), ("b", at(11))]
    assert [j.payload["name"] for j in scheduler.pending()] == ["too-late"]


def test_a_job_scheduled_in_the_past_runs_at_the_current_time(store: Store) -> None:
    clock, scheduler = make(store)
    ran: list[tuple[int, datetime]] = []
    scheduler.register("note", recorder(clock, ran))
    scheduler.advance_to(at(12))
    job_id = scheduler.schedule("note", at(8))
    assert scheduler.seconds_until_next_due() is None  # manual: nothing happens by itself
    assert [j.id for j in scheduler.run_due()] == [job_id]
    assert ran == [(job_id, at(12))]
    assert clock.now() == at(12)


def test_advance_by_a_day_runs_everything_inside_and_nothing_after(store: Store) -> None:
    clock, scheduler = make(store)
    ran: list[tuple[int, datetime]] = []
    scheduler.register("note", recorder(clock, ran))
    inside = [scheduler.schedule("note", START + timedelta(hours=h)) for h in range(0, 25, 3)]
    boundary = scheduler.schedule("note", START + timedelta(days=1))
    after = scheduler.schedule("note", START + timedelta(days=1, microseconds=1))
    done = scheduler.advance(timedelta(days=1))
    assert [j.id for j in done] == [*inside, boundary]
    assert [j.id for j in scheduler.pending()] == [after]
    assert clock.now() == START + timedelta(days=1)
    assert scheduler.next_due() == START + timedelta(days=1, microseconds=1)


def test_ties_are_broken_by_id(store: Store) -> None:
    clock, scheduler = make(store)
    ran: list[tuple[int, datetime]] = []
    scheduler.register("note", recorder(clock, ran))
    ids = [scheduler.schedule("note", at(10)) for _ in range(5)]
    scheduler.advance_to(at(10))
    assert [job_id for job_id, _ in ran] == ids


def test_dedupe_key_returns_the_existing_job(store: Store) -> None:
    _, scheduler = make(store)
    scheduler.register("note", lambda job: None)
    first = scheduler.schedule("note", at(10), {"n": 1}, dedupe_key="return:B1")
    again = scheduler.schedule("note", at(11), {"n": 2}, dedupe_key="return:B1")
    other = scheduler.schedule("note", at(11), dedupe_key="return:B2")
    assert again == first != other
    job = scheduler.job(first)
    assert job is not None and job.payload == {"n": 1} and job.due_at == at(10)
    assert store.scalar("SELECT COUNT(*) FROM jobs") == 2
    scheduler.advance_to(at(12))
    # Even after it ran, the key still refers to that job.
    assert scheduler.schedule("note", at(13), dedupe_key="return:B1") == first
    assert scheduler.pending() == []


def test_schedule_commits_with_the_callers_transaction(store: Store) -> None:
    _, scheduler = make(store)
    with pytest.raises(RuntimeError), store.transaction():
        scheduler.schedule("note", at(10))
        raise RuntimeError("the change that caused the job failed")
    assert scheduler.pending() == []
    with store.transaction():
        job_id = scheduler.schedule("note", at(10))
    assert [j.id for j in scheduler.pending()] == [job_id]


def test_failing_handler_is_rolled_back_and_others_still_run(store: Store) -> None:
    clock, scheduler = make(store)

    def boom(job: Job) -> None:
        store.set_kv("side.effect", "should be rolled back")
        scheduler.schedule("note", at(10, 30))  # rolled back too
        raise RuntimeError("disk full")

    ran: list[tuple[int, datetime]] = []
    scheduler.register("boom", boom)
    scheduler.register("note", recorder(clock, ran))
    bad = scheduler.schedule("boom", at(10))
    orphan = scheduler.schedule("nobody-handles-this", at(10, 15))
    good = scheduler.schedule("note", at(11))

    done = scheduler.advance_to(at(12))
    assert [(j.id, j.state) for j in done] == [(bad, "failed"), (orphan, "failed"), (good, "done")]
    assert ran == [(good, at(11))]
    assert store.get_kv("side.effect") is None
    assert store.scalar("SELECT COUNT(*) FROM jobs") == 3
    failed = scheduler.job(bad)
    assert failed is not None and failed.state == "failed"
    assert failed.error == "RuntimeError: disk full" and failed.ran_at == at(10)
    unhandled = scheduler.job(orphan)
    assert unhandled is not None and "no handler" in (unhandled.error or "")
    events = list_events(store, kind="job.failed")
    assert [(e["ref"], e["at_us"], e["detail"]["kind"]) for e in events] == [
        (str(bad), to_us(at(10)), "boom"), (str(orphan), to_us(at(10, 15)), "nobody-handles-this")
    ]
    assert events[0]["detail"]["error"] == "RuntimeError: disk full"
    assert clock.now() == at(12)
    # A failed job is not retried by later advances.
    assert scheduler.advance(timedelta(days=1)) == []


def test_register_twice_is_refused(store: Store) -> None:
    _, scheduler = make(store)
    scheduler.register("note", lambda job: None)
    with pytest.raises(ValueError, match="already registered"):
        scheduler.register("note", lambda job: None)


def test_advance_into_the_past_is_refused(store: Store) -> None:
    clock, scheduler = make(store)
    with pytest.raises(ValueError, match="backwards"):
        scheduler.advance_to(at(8))
    with pytest.raises(ValueError, match="negative"):
        scheduler.advance(timedelta(seconds=-1))
    assert clock.now() == START


def test_handlers_may_not_advance_the_clock(store: Store) -> None:
    _, scheduler = make(store)

    def nested(job: Job) -> None:
        scheduler.advance(timedelta(hours=1))

    scheduler.register("nested", nested)
    job_id = scheduler.schedule("nested", at(10))
    scheduler.advance_to(at(11))
    job = scheduler.job(job_id)
    assert job is not None and job.state == "failed" and "must not advance" in (job.error or "")


def test_restart_keeps_pending_jobs_and_does_not_rerun_done_ones(tmp_path: Path) -> None:
    path = tmp_path / "bank.db"
    store = Store.open(path)
    clock, scheduler = make(store)
    ran: list[tuple[int, datetime]] = []
    scheduler.register("note", recorder(clock, ran))
    first = scheduler.schedule("note", at(10), {"x": "一"})
    second = scheduler.schedule("note", at(14))
    scheduler.advance_to(at(12))
    store.close()

    store = Store.open(path)
    clock, scheduler = make(store)
    ran2: list[tuple[int, datetime]] = []
    scheduler.register("note", recorder(clock, ran2))
    assert clock.now() == at(12)
    assert [j.id for j in scheduler.pending()] == [second]
    done = scheduler.job(first)
    assert done is not None and done.state == "done" and done.payload == {"x": "一"}
    scheduler.advance(timedelta(days=1))
    assert ran == [(first, at(10))] and ran2 == [(second, at(14))]
    store.close()


def test_crash_mid_advance_runs_each_job_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "bank.db"
    store = Store.open(path)
    clock, scheduler = make(store)
    state = {"crash": True}

    def work(job: Job) -> None:
        store.execute(
            "INSERT INTO events(at_us, kind, ref) VALUES (?, 'work', ?)",
            (clock.now_us(), str(job.id)),
        )
        if job.payload["n"] == 2 and state["crash"]:
            raise Crash

    scheduler.register("work", work)
    one = scheduler.schedule("work", at(10), {"n": 1})
    two = scheduler.schedule("work", at(11), {"n": 2})
    three = scheduler.schedule("work", at(12), {"n": 3})
    with pytest.raises(Crash):
        scheduler.advance_to(at(13))
    assert clock.now() == at(10)  # memory follows the database, not the rolled-back move
    store.close()

    store = Store.open(path)
    clock, scheduler = make(store)
    state["crash"] = False
    scheduler.register("work", work)
    assert clock.now() == at(10)
    job_one = scheduler.job(one)
    assert job_one is not None and job_one.state == "done"
    assert [j.id for j in scheduler.pending()] == [two, three]
    assert [j.id for j in scheduler.advance_to(at(13))] == [two, three]
    assert scheduler.advance(timedelta(days=1)) == []
    refs = [e["ref"] for e in list_events(store, kind="work")]
    assert refs == [str(one), str(two), str(three)]
    assert [e["ref"] for e in list_events(store, kind="job.done")] == refs
    store.close()


def test_run_due_in_accelerated_mode(store: Store) -> None:
    wall = FakeWall()
    clock, scheduler = make(store, ClockMode.parse("accelerated:60"), wall=wall)
    ran: list[tuple[int, datetime]] = []
    scheduler.register("note", recorder(clock, ran))
    soon = scheduler.schedule("note", START + timedelta(minutes=10))
    later = scheduler.schedule("note", START + timedelta(hours=2))
    assert scheduler.seconds_until_next_due() == pytest.approx(10.0)
    assert scheduler.run_due() == []
    wall.t += 10
    assert scheduler.seconds_until_next_due() == 0.0
    assert [j.id for j in scheduler.run_due()] == [soon]
    assert ran == [(soon, START + timedelta(minutes=10))]
    assert clock.now() == START + timedelta(minutes=10)  # run_due never jumps
    assert scheduler.seconds_until_next_due() == pytest.approx(110 * 60 / 60)
    # Advancing an accelerated clock jumps ahead, then time keeps running from there.
    scheduler.advance_to(START + timedelta(hours=3))
    assert ran[-1] == (later, START + timedelta(hours=2))
    assert clock.now() == START + timedelta(hours=3)
    wall.t += 1
    assert clock.now() == START + timedelta(hours=3, minutes=1)


def test_seconds_until_next_due_in_realtime_mode(store: Store) -> None:
    wall = FakeWall()
    clock, scheduler = make(store, ClockMode.parse("realtime"), wall=wall)
    assert scheduler.seconds_until_next_due() is None
    scheduler.schedule("note", START + timedelta(seconds=90))
    wall.t += 30
    assert scheduler.seconds_until_next_due() == pytest.approx(60.0)
    clock.set_mode(MANUAL)
    assert scheduler.seconds_until_next_due() is None


def test_payload_is_stored_as_json(store: Store) -> None:
    _, scheduler = make(store)
    job_id = scheduler.schedule("note", at(10), {"batch": "B1", "amount_fen": 100})
    raw = store.scalar("SELECT payload FROM jobs WHERE id = ?", (job_id,))
    assert json.loads(raw) == {"amount_fen": 100, "batch": "B1"}
    assert scheduler.job(999) is None


# -- property: every job exactly once, in order, never early ---------------------------

offsets = st.integers(min_value=0, max_value=3 * 24 * 3600)  # seconds after START


@settings(max_examples=60, deadline=None)
@given(
    jobs=st.lists(st.tuples(offsets, st.integers(min_value=-1, max_value=7200)), max_size=30),
    steps=st.lists(st.integers(min_value=0, max_value=36 * 3600), min_size=1, max_size=12),
)
def test_property_jobs_run_once_in_order_never_early(
    jobs: list[tuple[int, int]], steps: list[int]
) -> None:
    store = Store.open(None)
    try:
        clock, scheduler = make(store)
        ran: list[tuple[int, datetime, datetime]] = []  # (id, due, now when run)

        def handler(job: Job) -> None:
            ran.append((job.id, job.due_at, clock.now()))
            # Some jobs spawn a follow-up (child offset >= 0), like a return file
            # triggering a settlement.
            child = job.payload["child"]
            if child >= 0:
                scheduler.schedule("j", clock.now() + timedelta(seconds=child), {"child": -1})

        scheduler.register("j", handler)
        for offset, child in jobs:
            scheduler.schedule("j", START + timedelta(seconds=offset), {"child": child})

        for step in steps:
            before = clock.now()
            scheduler.advance(timedelta(seconds=step))
            assert clock.now() == before + timedelta(seconds=step)
            assert all(j.due_at > clock.now() for j in scheduler.pending())
        scheduler.advance(timedelta(days=5))  # past every job and every child

        total = store.scalar("SELECT COUNT(*) FROM jobs")
        assert total == len(jobs) + sum(1 for _, child in jobs if child >= 0)
        ids = [job_id for job_id, _, _ in ran]
        assert sorted(ids) == list(range(1, total + 1))  # each exactly once
        assert all(now == due for _, due, now in ran)  # never early (nor late in manual)
        keys = [(due, job_id) for job_id, due, _ in ran]
        assert keys == sorted(keys)  # nondecreasing due time, ties by id
        assert scheduler.pending() == []
    finally:
        store.close()


# -- sliced jobs -------------------------------------------------------------------------


def test_a_sliced_job_holds_the_clock_and_the_queue_until_it_is_done(store: Store) -> None:
    """A job done in slices (a large batch) runs in order and once, its slices in their own
    transactions; while it is in progress no later job runs and the clock stays at it."""
    clock, scheduler = make(store)
    log: list[tuple[str, int, datetime]] = []
    slices = {"done": 0}

    def sliced(job: Job, deadline: float | None) -> bool:
        slices["done"] += 1
        log.append(("slice", slices["done"], clock.now()))
        return deadline is None or slices["done"] == 3

    scheduler.register_sliced("big", sliced)
    scheduler.register("later", lambda job: log.append(("later", job.id, clock.now())))
    with store.transaction():
        scheduler.schedule("big", at(10))
        later = scheduler.schedule("later", at(10, 30))
    scheduler.slice_seconds = 0.0
    assert scheduler.advance_to(at(11)) == []
    assert scheduler.in_progress() is not None and clock.now() == at(10)
    assert [entry[0] for entry in log] == ["slice"]
    assert [j.kind for j in scheduler.run_due()] == []  # the second slice; "later" is not due yet
    ran = scheduler.advance_to(at(11))  # the last slice, then the clock goes on
    assert [j.kind for j in ran] == ["big", "later"]
    assert scheduler.in_progress() is None and clock.now() == at(11)
    assert log == [("slice", 1, at(10)), ("slice", 2, at(10)), ("slice", 3, at(10)),
                   ("later", later, at(10, 30))]
    assert scheduler.advance_to(at(12)) == []  # each ran once
