# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backup rotation: the ONE implementation of the rules.

Pure rules, no file system and no clock: given the names of one folder's
files, a format, a count, an age limit and "now", which backups stay and
which go. The program applies them (``actions/rotate.py``: the folder scan,
the clock, the lock, the deletion of the sidecars) after every scheduled
backup (``run``) and on demand (``rotate``, which the backup_rotate Ansible
module drives), to the local folders and to the cloud copies.

The rules (also in the backup_rotate module's documentation; keep the two in step)
-----------------------------------------------------------------------------------
A folder holds the backups of one schedule, all named by one strftime
format (``field_service_%Y%m%d_%H%M%S.sql.gz``), optionally followed by an
encryption suffix (``.age``). For a folder with a count ``keep`` (N) and an
age limit ``max_age``:

1. Only files whose whole name matches the folder's format (plus an optional
   encryption suffix) are backups. Every other file is never touched.
2. A backup's time is read from its NAME (the period it names: the second of
   a daily name, the Monday 00:00 of an ISO week ``%V``/``%G``, the 1st 00:00
   of a month), never from the file's mtime, which lies after a copy or a
   restore.
3. A backup is deleted only when BOTH: it is not among the N newest backups
   of the folder, AND it is older than the age limit (its time is before
   ``now - max_age``; months and years are counted on the calendar, a day
   that the shorter month lacks counting as its last day). So backups that
   stopped for a while never wipe out the history: the N newest stay
   whatever their age.
4. The newest backup is never deleted (N is at least 1).
5. When any backup's time is after ``now`` (the clock jumped back, or a file
   came from a machine with a clock ahead), nothing at all is deleted.
6. Callers run a rotation only after a new backup succeeded (the program
   does; the cleanup command is asked for by a person). With a deleted
   backup goes its checksum sidecar ``<name>.sha256``.

Consequences worth knowing (tested): a plan deletes nothing the same plan
with a later ``now`` would keep; applying a plan and planning again deletes
nothing more; a backward clock never deletes more than the true clock would.
"""

from __future__ import annotations

import calendar
import datetime
import re
from dataclasses import dataclass, field

from .names import ENCRYPTED_SUFFIX, SIDECAR_SUFFIX

# Suffixes an encryption stage appends to a backup's name.
ENCRYPTED_SUFFIXES = (ENCRYPTED_SUFFIX,)

# strftime directives a backup name format may use, with the regex of what
# strftime writes for them. Every other directive is refused: a name that
# cannot be read back into a time cannot be rotated safely.
_DIRECTIVES = {
    "Y": r"\d{4}",
    "y": r"\d{2}",
    "m": r"\d{2}",
    "d": r"\d{2}",
    "j": r"\d{3}",
    "H": r"\d{2}",
    "M": r"\d{2}",
    "S": r"\d{2}",
    "G": r"\d{4}",
    "V": r"\d{2}",
    "u": r"[1-7]",
}
_UNITS = {"h": "hours", "d": "days", "w": "weeks", "m": "months", "y": "years"}
_MAX_AGE_RE = re.compile(r"^\s*(\d+)\s*([hdwmy])\s*$")


class RotationError(ValueError):
    """A format, age limit or count that cannot be used for a rotation."""


# --------------------------------------------------------------------------
# Name formats


@dataclass(frozen=True)
class NameFormat:
    """A backup name format, compiled once: ``match(name) -> datetime|None``."""

    name_format: str
    suffixes: tuple[str, ...] = ENCRYPTED_SUFFIXES
    regex: re.Pattern = field(init=False, repr=False, compare=False)
    directives: frozenset = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        regex, directives = _compile(self.name_format, self.suffixes)
        object.__setattr__(self, "regex", regex)
        object.__setattr__(self, "directives", directives)

    def time_of(self, name: str) -> datetime.datetime | None:
        """The time a matching name stands for; None if it does not match."""
        match = self.regex.fullmatch(name)
        if match is None:
            return None
        try:
            return _to_datetime({k: int(v) for k, v in match.groupdict().items() if v is not None})
        except ValueError:  # e.g. month 13, ISO week 53 of a 52-week year
            return None

    def render(self, when: datetime.datetime) -> str:
        """The name of a backup taken at ``when`` (no encryption suffix)."""
        return when.strftime(self.name_format)


def _compile(name_format: str, suffixes) -> tuple[re.Pattern, frozenset]:
    if not isinstance(name_format, str) or not name_format:
        raise RotationError("a backup name format must be a non-empty string")
    if "/" in name_format or "\0" in name_format or name_format.startswith("."):
        raise RotationError(f"name format {name_format!r}: a file name, not starting with '.'")
    parts: list[str] = []
    seen: set[str] = set()
    i = 0
    while i < len(name_format):
        char = name_format[i]
        if char != "%":
            parts.append(re.escape(char))
            i += 1
            continue
        if i + 1 >= len(name_format):
            raise RotationError(f"name format {name_format!r} ends with a lone '%'")
        directive = name_format[i + 1]
        i += 2
        if directive == "%":
            parts.append("%")
            continue
        if directive not in _DIRECTIVES:
            raise RotationError(
                f"name format {name_format!r}: %{directive} cannot be read back into a time; "
                f"use only {', '.join('%' + d for d in _DIRECTIVES)}")
        if directive in seen:
            parts.append(f"(?P={directive})")
        else:
            parts.append(f"(?P<{directive}>{_DIRECTIVES[directive]})")
            seen.add(directive)
    has_iso = "G" in seen or "V" in seen
    if has_iso and not {"G", "V"} <= seen:
        raise RotationError(f"name format {name_format!r}: an ISO week needs both %V and %G "
                            "(the ISO year: %Y is wrong around New Year)")
    if has_iso and seen & {"m", "d", "j"}:
        raise RotationError(f"name format {name_format!r}: mix an ISO week (%V %G) with no "
                            "calendar month or day")
    if not has_iso and not seen & {"Y", "y"}:
        raise RotationError(f"name format {name_format!r} has no year (%Y, or %G with %V)")
    if "j" in seen and seen & {"m", "d"}:
        raise RotationError(f"name format {name_format!r}: use either %j or %m/%d")
    if "d" in seen and "m" not in seen:
        raise RotationError(f"name format {name_format!r}: a day (%d) needs its month (%m)")
    for suffix in suffixes:
        if not suffix.startswith(".") or "/" in suffix:
            raise RotationError(f"encryption suffix {suffix!r} must start with '.'")
    tail = "(?:" + "|".join(re.escape(s) for s in suffixes) + ")?" if suffixes else ""
    return re.compile("".join(parts) + tail), frozenset(seen)


def _to_datetime(fields: dict) -> datetime.datetime:
    hour, minute, second = fields.get("H", 0), fields.get("M", 0), fields.get("S", 0)
    if "G" in fields:
        day = datetime.date.fromisocalendar(fields["G"], fields["V"], fields.get("u", 1))
        return datetime.datetime(day.year, day.month, day.day, hour, minute, second)
    year = fields["Y"] if "Y" in fields else 2000 + fields["y"]
    if "j" in fields:
        if not 1 <= fields["j"] <= (366 if calendar.isleap(year) else 365):
            raise ValueError("day of year out of range")
        day = datetime.date(year, 1, 1) + datetime.timedelta(days=fields["j"] - 1)
        return datetime.datetime(day.year, day.month, day.day, hour, minute, second)
    return datetime.datetime(year, fields.get("m", 1), fields.get("d", 1), hour, minute, second)


# --------------------------------------------------------------------------
# Age limits


@dataclass(frozen=True)
class MaxAge:
    """An age limit: ``7d``, ``4w``, ``12m``, ``1y``, ``36h``."""

    count: int
    unit: str  # h d w m y

    @classmethod
    def parse(cls, value) -> MaxAge:
        if isinstance(value, MaxAge):
            return value
        match = _MAX_AGE_RE.match(str(value))
        if match is None:
            raise RotationError(f"age limit {value!r}: a number and a unit, h (hours), d (days), "
                                "w (weeks), m (calendar months) or y (years), e.g. 7d, 4w, 12m")
        return cls(int(match.group(1)), match.group(2))

    def cutoff(self, now: datetime.datetime) -> datetime.datetime:
        """``now`` minus this age: a backup dated before it is older than the limit."""
        if self.unit in ("m", "y"):
            return subtract_months(now, self.count * (12 if self.unit == "y" else 1))
        return now - datetime.timedelta(**{_UNITS[self.unit]: self.count})

    def __str__(self) -> str:
        return f"{self.count}{self.unit}"


def subtract_months(when: datetime.datetime, months: int) -> datetime.datetime:
    """``when`` moved back by calendar months; the 31st becomes the month's last day."""
    index = when.year * 12 + (when.month - 1) - months
    year, month = divmod(index, 12)
    month += 1
    day = min(when.day, calendar.monthrange(year, month)[1])
    return when.replace(year=year, month=month, day=day)


# --------------------------------------------------------------------------
# The plan


@dataclass
class Plan:
    """What a rotation keeps and deletes in one folder.

    keep:    backups kept, newest first.
    delete:  backups to delete, newest first (their sidecars go with them).
    ignored: names that are not backups of this folder (never touched).
    reason:  why nothing is deleted although something could be (or None).
    """

    keep: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    reason: str | None = None
    times: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"keep": list(self.keep), "delete": list(self.delete),
                "ignored": list(self.ignored), "reason": self.reason}


def plan_rotation(names, name_format, keep: int, max_age, now: datetime.datetime,
                  suffixes=ENCRYPTED_SUFFIXES) -> Plan:
    """Apply the rules to the file ``names`` of one folder at time ``now``.

    ``name_format`` is a format string or a ``NameFormat``; ``max_age`` a
    string like ``7d`` or a ``MaxAge``; ``now`` a naive datetime on the same
    clock the names were written with (local time unless they are UTC).
    Sidecars (``*.sha256``) and hidden files are left out of ``ignored``.
    """
    fmt = name_format if isinstance(name_format, NameFormat) else NameFormat(name_format, tuple(suffixes))
    limit = MaxAge.parse(max_age)
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise RotationError(f"keep must be a whole number of at least 1 (the newest backup is "
                            f"never deleted), got {keep!r}")
    if now.tzinfo is not None:
        raise RotationError("now must be a naive datetime on the clock of the names")
    plan = Plan()
    dated = []
    for name in sorted(set(names)):
        when = fmt.time_of(name)
        if when is None:
            if not name.startswith(".") and not name.endswith(SIDECAR_SUFFIX):
                plan.ignored.append(name)
            continue
        dated.append((when, name))
        plan.times[name] = when
    dated.sort(reverse=True)  # newest first; same time: name order, reversed
    future = [name for when, name in dated if when > now]
    cutoff = limit.cutoff(now)
    for index, (when, name) in enumerate(dated):
        if index < keep or when >= cutoff or future:
            plan.keep.append(name)
        else:
            plan.delete.append(name)
    if future:
        plan.reason = (f"{future[-1]} is dated after now ({now:%Y-%m-%d %H:%M:%S}): the clock "
                       "went back or the file came from a clock ahead; nothing is deleted")
    return plan


def companions(name: str) -> list[str]:
    """Files that go with a backup when it is deleted."""
    return [name + SIDECAR_SUFFIX]


def check_settings(name_format: str, keep, max_age) -> None:
    """Raise RotationError unless the three settings of a folder can be used."""
    NameFormat(name_format)
    MaxAge.parse(max_age)
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise RotationError(f"keep must be a whole number of at least 1, got {keep!r}")
