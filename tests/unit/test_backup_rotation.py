"""The rotation rules (roles/backup/files/fs_backup/rotation.py).

Property-based tests (hypothesis) for the rules the module documents, and
table tests around year ends, ISO weeks 52/53 and month ends, including a
simulation of the seed's three cron schedules day by day.
"""

from __future__ import annotations

import datetime

import pytest
from fs_backup import rotation as rot
from hypothesis import assume, given, settings
from hypothesis import strategies as st

DAILY = "field_service_%Y%m%d_%H%M%S.sql.gz"
WEEKLY = "field_service_week_%V_%G.sql.gz"
MONTHLY = "field_service_%Y_%m.sql.gz"
SEED = {  # folder -> (format, keep, max_age), the seed's schedules
    "daily": (DAILY, 7, "7d"),
    "weekly": (WEEKLY, 4, "4w"),
    "monthly": (MONTHLY, 12, "12m"),
}

dt = datetime.datetime


# ---------------------------------------------------------------------------
# Names


@pytest.mark.parametrize(("when", "name"), [
    # ISO week with its ISO year: the Sundays around New Year
    (dt(2024, 12, 29, 3), "field_service_week_52_2024.sql.gz"),
    (dt(2025, 1, 5, 3), "field_service_week_01_2025.sql.gz"),
    (dt(2025, 12, 28, 3), "field_service_week_52_2025.sql.gz"),
    (dt(2026, 1, 4, 3), "field_service_week_01_2026.sql.gz"),
    (dt(2021, 1, 3, 3), "field_service_week_53_2020.sql.gz"),   # %Y would say 2021
    (dt(2027, 1, 3, 3), "field_service_week_53_2026.sql.gz"),   # %Y would say 2027
    (dt(2019, 12, 29, 3), "field_service_week_52_2019.sql.gz"),
])
def test_weekly_names_use_the_iso_year(when, name):
    fmt = rot.NameFormat(WEEKLY)
    assert fmt.render(when) == name
    monday = fmt.time_of(name)
    assert monday.weekday() == 0 and monday <= when < monday + datetime.timedelta(days=7)
    assert fmt.time_of(name + ".age") == monday


@pytest.mark.parametrize(("fmt", "name", "expected"), [
    (DAILY, "field_service_20251010_020000.sql.gz", dt(2025, 10, 10, 2)),
    (DAILY, "field_service_20251010_020000.sql.gz.age", dt(2025, 10, 10, 2)),
    (DAILY, "field_service_20240229_235959.sql.gz", dt(2024, 2, 29, 23, 59, 59)),
    (MONTHLY, "field_service_2025_10.sql.gz", dt(2025, 10, 1)),
    (MONTHLY, "field_service_2025_12.sql.gz.age", dt(2025, 12, 1)),
    ("backup_%Y%m%d_%H%M%S.sql.gz", "backup_20251010_153015.sql.gz", dt(2025, 10, 10, 15, 30, 15)),
    ("db_%Y-%j.sql.zst", "db_2024-366.sql.zst", dt(2024, 12, 31)),
    ("100%%_%Y.sql", "100%_2025.sql", dt(2025, 1, 1)),
])
def test_names_are_read_back(fmt, name, expected):
    assert rot.NameFormat(fmt).time_of(name) == expected


@pytest.mark.parametrize(("fmt", "name"), [
    (DAILY, "field_service_20251010_020000.sql.gz.sha256"),   # a sidecar
    (DAILY, ".field_service_20251010_020000.sql.gz.partial"),  # a running backup
    (DAILY, "field_service_20251310_020000.sql.gz"),          # month 13
    (DAILY, "field_service_20250230_020000.sql.gz"),          # 30 February
    (DAILY, "field_service_20251010_020000.sql.gz.gpg"),      # not our suffix
    (DAILY, "other_20251010_020000.sql.gz"),
    (DAILY, "field_service_20251010_020000.sql.gz~"),
    (DAILY, "xfield_service_20251010_020000.sql.gz"),
    (WEEKLY, "field_service_week_53_2025.sql.gz"),            # 2025 has 52 ISO weeks
    (WEEKLY, "field_service_week_00_2025.sql.gz"),
    (MONTHLY, "field_service_2025_13.sql.gz"),
    ("db_%Y-%j.sql", "db_2025-366.sql"),                      # not a leap year
])
def test_names_that_are_not_backups(fmt, name):
    assert rot.NameFormat(fmt).time_of(name) is None


@pytest.mark.parametrize("fmt", [
    "backup_%b_%Y.sql.gz",      # month name: cannot be read back safely
    "field_service_week_%V_%Y.sql.gz",  # the rotate-backups bug: ISO week with calendar year
    "field_service_%m%d.sql.gz",  # no year
    "field_service_%Y_%d.sql",    # a day without its month
    "field_service_%G_%V_%m.sql",
    "dir/field_service_%Y.sql",
    ".hidden_%Y.sql",
    "",
    "trailing_%",
])
def test_bad_formats_are_refused(fmt):
    with pytest.raises(rot.RotationError):
        rot.NameFormat(fmt)


@pytest.mark.parametrize(("text", "now", "cutoff"), [
    ("7d", dt(2025, 10, 10, 2), dt(2025, 10, 3, 2)),
    ("4w", dt(2025, 10, 12, 3), dt(2025, 9, 14, 3)),
    ("12m", dt(2025, 10, 1, 4), dt(2024, 10, 1, 4)),
    ("1m", dt(2025, 3, 31), dt(2025, 2, 28)),      # month end
    ("1m", dt(2024, 3, 31), dt(2024, 2, 29)),      # leap year
    ("12m", dt(2025, 2, 28), dt(2024, 2, 28)),
    ("1y", dt(2025, 2, 28), dt(2024, 2, 28)),
    ("1y", dt(2024, 2, 29), dt(2023, 2, 28)),
    ("2m", dt(2026, 1, 31, 4), dt(2025, 11, 30, 4)),  # across the year end
    ("36h", dt(2025, 1, 1, 12), dt(2024, 12, 31, 0)),
])
def test_age_limits(text, now, cutoff):
    assert rot.MaxAge.parse(text).cutoff(now) == cutoff


@pytest.mark.parametrize("text", ["7", "d", "7 days", "-1d", "1.5d", "7s", ""])
def test_bad_age_limits(text):
    with pytest.raises(rot.RotationError):
        rot.MaxAge.parse(text)


@pytest.mark.parametrize("keep", [0, -1, True, 1.5, "7"])
def test_keep_must_be_at_least_one(keep):
    with pytest.raises(rot.RotationError):
        rot.plan_rotation([], DAILY, keep, "7d", dt(2025, 1, 1))


# ---------------------------------------------------------------------------
# Tables


def daily(*days, hour=2):
    return [dt(2025, 10, d, hour).strftime(DAILY) for d in days]


def test_daily_keeps_seven_days():
    names = daily(*range(1, 11))  # 1..10 October, 02:00
    plan = rot.plan_rotation(names, DAILY, 7, "7d", dt(2025, 10, 10, 2, 0, 40))
    assert plan.delete == daily(3, 2, 1)
    assert plan.keep == daily(*range(10, 3, -1))
    assert plan.reason is None


def test_backups_that_stopped_keep_their_history():
    # the last seven backups are two months old: all kept, only the 8th+ may go
    names = daily(*range(1, 11))
    plan = rot.plan_rotation(names, DAILY, 7, "7d", dt(2025, 12, 10))
    assert plan.keep == daily(*range(10, 3, -1))
    assert plan.delete == daily(3, 2, 1)
    plan = rot.plan_rotation(names[-7:], DAILY, 7, "7d", dt(2026, 12, 10))
    assert plan.delete == []


def test_young_backups_beyond_the_count_stay():
    # three backups a day (manual runs): more than 7 files, none older than 7 days
    names = daily(8, 9, 10) + daily(8, 9, 10, hour=14) + daily(8, 9, 10, hour=20)
    plan = rot.plan_rotation(names, DAILY, 7, "7d", dt(2025, 10, 10, 21))
    assert plan.delete == [] and len(plan.keep) == 9


def test_only_matching_names_are_touched():
    names = daily(1, 2, 3) + [
        "field_service_20251001_020000.sql.gz.sha256", "notes.txt", ".x.partial",
        "field_service_20251001_020000.sql.gz.bak", "field_service_2025_10.sql.gz"]
    plan = rot.plan_rotation(names, DAILY, 1, "1d", dt(2025, 12, 1))
    assert plan.delete == daily(2, 1)
    assert plan.keep == daily(3)
    assert plan.ignored == ["field_service_20251001_020000.sql.gz.bak",
                            "field_service_2025_10.sql.gz", "notes.txt"]
    assert rot.companions(plan.delete[0]) == [plan.delete[0] + ".sha256"]


def test_encrypted_and_plain_backups_rotate_together():
    names = daily(1, 2) + [n + ".age" for n in daily(3, 4)]
    plan = rot.plan_rotation(names, DAILY, 2, "1d", dt(2025, 11, 1))
    assert plan.keep == [n + ".age" for n in daily(4, 3)]
    assert plan.delete == daily(2, 1)


def test_a_clock_that_went_back_deletes_nothing():
    names = daily(*range(1, 21))
    # the true time would delete 1..13
    assert len(rot.plan_rotation(names, DAILY, 7, "7d", dt(2025, 10, 20, 3)).delete) == 13
    # the clock says 19 October: the backup of the 20th is "in the future"
    plan = rot.plan_rotation(names, DAILY, 7, "7d", dt(2025, 10, 19, 23))
    assert plan.delete == [] and len(plan.keep) == 20
    assert "field_service_20251020_020000.sql.gz" in plan.reason


def test_weekly_across_a_53_week_year():
    # Sundays from December 2026 to February 2027; 2026 has an ISO week 53
    fmt = rot.NameFormat(WEEKLY)
    sundays = [dt(2026, 11, 29, 3) + datetime.timedelta(weeks=i) for i in range(12)]
    names = [fmt.render(s) for s in sundays]
    assert "field_service_week_53_2026.sql.gz" in names
    assert "field_service_week_01_2027.sql.gz" in names
    folder: list[str] = []
    for sunday, name in zip(sundays, names, strict=True):
        folder.append(name)
        plan = rot.plan_rotation(folder, WEEKLY, 4, "4w", sunday + datetime.timedelta(minutes=5))
        folder = plan.keep
        assert folder == [fmt.render(s) for s in sundays if s <= sunday][::-1][:4]


def test_monthly_across_the_year_end():
    fmt = rot.NameFormat(MONTHLY)
    folder: list[str] = []
    firsts = [dt(2024 + (m // 12), m % 12 + 1, 1, 4) for m in range(0, 30)]
    for first in firsts:
        folder.append(fmt.render(first))
        folder = rot.plan_rotation(folder, MONTHLY, 12, "12m", first + datetime.timedelta(minutes=3)).keep
    assert folder == [fmt.render(f) for f in firsts[-12:]][::-1]
    assert folder[-1] == "field_service_2025_07.sql.gz" and folder[0] == "field_service_2026_06.sql.gz"


@pytest.mark.parametrize("folder", sorted(SEED))
def test_seed_schedules_simulated_for_two_years(folder):
    """Cron every day of 2025-2026 as the seed says; rotation after each backup."""
    fmt_text, keep, max_age = SEED[folder]
    fmt = rot.NameFormat(fmt_text)
    files: list[str] = []
    runs = 0
    day = dt(2025, 1, 1)
    while day < dt(2027, 1, 1):
        run = None
        if folder == "daily":
            run = day.replace(hour=2)
        elif folder == "weekly" and day.weekday() == 6:
            run = day.replace(hour=3)
        elif folder == "monthly" and day.day == 1:
            run = day.replace(hour=4)
        if run is not None:
            runs += 1
            files.append(fmt.render(run))
            plan = rot.plan_rotation(files, fmt, keep, max_age, run + datetime.timedelta(seconds=30))
            files = plan.keep
            assert len(files) == min(runs, keep), (run, files)
            assert files[0] == fmt.render(run)
        day += datetime.timedelta(days=1)


# ---------------------------------------------------------------------------
# Properties

FORMATS = [DAILY, WEEKLY, MONTHLY]
times = st.datetimes(min_value=dt(2019, 1, 1), max_value=dt(2031, 12, 31))
ages = st.builds(lambda n, u: f"{n}{u}", st.integers(0, 40), st.sampled_from("hdwmy"))
junk = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789.", min_size=1, max_size=30)


@st.composite
def folders(draw):
    fmt = draw(st.sampled_from(FORMATS))
    when = draw(st.lists(times, max_size=40))
    encrypted = draw(st.lists(st.booleans(), min_size=len(when), max_size=len(when)))
    render = rot.NameFormat(fmt).render
    names = {render(w) + (".age" if e else "") for w, e in zip(when, encrypted, strict=True)}
    others = set(draw(st.lists(junk, max_size=5)))
    names |= {n + ".sha256" for n in names if draw(st.booleans())}
    return fmt, sorted(names | others)


def _times(fmt, names):
    f = rot.NameFormat(fmt)
    return {n: f.time_of(n) for n in names if f.time_of(n) is not None}


@settings(max_examples=300, deadline=None)
@given(folder=folders(), keep=st.integers(1, 15), max_age=ages, now=times)
def test_properties_of_a_plan(folder, keep, max_age, now):
    fmt, names = folder
    plan = rot.plan_rotation(names, fmt, keep, max_age, now)
    backups = _times(fmt, names)
    # a partition of the folder's backups; nothing else is ever deleted
    assert sorted(plan.keep + plan.delete) == sorted(backups)
    assert not set(plan.delete) & set(plan.ignored)
    # the newest backup, and the `keep` newest, always stay
    if backups:
        newest = max(backups.values())
        assert any(backups[n] == newest for n in plan.keep)
        assert len(plan.keep) >= min(keep, len(backups))
    cutoff = rot.MaxAge.parse(max_age).cutoff(now)
    for name in plan.delete:
        # deleted only when older than the limit AND not among the newest `keep`
        assert backups[name] < cutoff
        assert sum(1 for t in backups.values() if t >= backups[name]) > keep
    # a backup dated after now: nothing is deleted
    if any(t > now for t in backups.values()):
        assert plan.delete == [] and plan.reason
    # applying the plan and planning again deletes nothing more
    again = rot.plan_rotation([n for n in names if n not in plan.delete], fmt, keep, max_age, now)
    assert again.delete == []


@settings(max_examples=300, deadline=None)
@given(folder=folders(), keep=st.integers(1, 15), max_age=ages, now=times,
       back=st.timedeltas(min_value=datetime.timedelta(seconds=1), max_value=datetime.timedelta(days=800)))
def test_a_clock_that_jumps_back_never_deletes_more(folder, keep, max_age, now, back):
    fmt, names = folder
    true_plan = rot.plan_rotation(names, fmt, keep, max_age, now)
    earlier = now - back
    assume(earlier.year >= 1900)
    back_plan = rot.plan_rotation(names, fmt, keep, max_age, earlier)
    assert set(back_plan.delete) <= set(true_plan.delete)
    backups = _times(fmt, names)
    if backups and max(backups.values()) > earlier:
        assert back_plan.delete == []


@settings(max_examples=200, deadline=None)
@given(when=st.lists(times, min_size=1, max_size=30, unique=True), keep=st.integers(1, 10),
       max_age=ages, now=times, mtime_noise=st.integers(0, 10**9))
def test_only_names_count_never_the_order_given(when, keep, max_age, now, mtime_noise):
    names = [w.strftime(DAILY) for w in when]
    shuffled = names[mtime_noise % len(names):] + names[:mtime_noise % len(names)]
    assert rot.plan_rotation(names, DAILY, keep, max_age, now).as_dict() == \
        rot.plan_rotation(shuffled, DAILY, keep, max_age, now).as_dict()


@settings(max_examples=200, deadline=None)
@given(fmt=st.sampled_from(FORMATS), when=times)
def test_render_then_read_back_names_the_period(fmt, when):
    f = rot.NameFormat(fmt)
    start = f.time_of(f.render(when))
    assert start is not None and start <= when
    if fmt == DAILY:
        assert start == when.replace(microsecond=0)
    elif fmt == WEEKLY:
        assert start.weekday() == 0 and when - start < datetime.timedelta(days=7)
    else:
        assert (start.year, start.month, start.day) == (when.year, when.month, 1)
