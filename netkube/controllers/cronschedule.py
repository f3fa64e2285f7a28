"""Standard 5-field cron schedules (and @hourly-style macros): parse and find the next run time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
          "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
_NAMES = {3: ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
          4: ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]}
_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]


class ScheduleError(ValueError):
    """An unparseable schedule; the CronJob gets an UnparseableSchedule warning."""


def _value(text: str, field: int) -> int:
    names = _NAMES.get(field)
    if names and text.lower() in names:
        return names.index(text.lower()) + (1 if field == 3 else 0)
    if not text.isdigit():
        raise ScheduleError(f"failed to parse int from {text}")
    v = int(text)
    return 0 if field == 4 and v == 7 else v  # 7 is Sunday too


def _field(text: str, field: int) -> frozenset[int]:
    lo, hi = _RANGES[field]
    out: set[int] = set()
    for part in text.split(","):
        rng, _, step_text = part.partition("/")
        step = int(step_text) if step_text.isdigit() else 1
        if step_text and not step_text.isdigit() or step < 1:
            raise ScheduleError(f"bad step in {part!r}")
        if rng in ("*", "?"):
            a, b = lo, hi
        elif "-" in rng:
            a, b = (_value(x, field) for x in rng.split("-", 1))
        else:
            a = _value(rng, field)
            b = hi if step_text else a
        if a < lo or b > hi or a > b:
            raise ScheduleError(f"end of range ({b}) above maximum ({hi}): {part}" if b > hi else f"bad range {part!r}")
        out.update(range(a, b + 1, step))
    return frozenset(out)


@dataclass(frozen=True)
class Schedule:
    minute: frozenset[int]
    hour: frozenset[int]
    dom: frozenset[int]
    month: frozenset[int]
    dow: frozenset[int]
    dom_star: bool
    dow_star: bool

    def matches(self, t: datetime) -> bool:
        if t.minute not in self.minute or t.hour not in self.hour or t.month not in self.month:
            return False
        dom_ok, dow_ok = t.day in self.dom, (t.isoweekday() % 7) in self.dow
        # cron: when both day fields are restricted, either may match.
        if self.dom_star or self.dow_star:
            return dom_ok and dow_ok
        return dom_ok or dow_ok

    def next_after(self, t: datetime) -> datetime:
        """The first matching minute strictly after t (UTC)."""
        c = t.replace(second=0, microsecond=0) + timedelta(minutes=1)
        for _ in range(60 * 24 * 366 * 5):
            if self.matches(c):
                return c
            c += timedelta(minutes=1) if c.hour in self.hour else timedelta(minutes=60 - c.minute)
        raise ScheduleError("schedule never fires")


def parse(text: str) -> Schedule:
    text = MACROS.get(text.strip(), text.strip())
    for prefix in ("TZ=", "CRON_TZ="):
        if text.startswith(prefix):
            raise ScheduleError("time zones in the schedule are not supported; use spec.timeZone")
    fields = text.split()
    if len(fields) != 5:
        raise ScheduleError(f"expected exactly 5 fields, found {len(fields)}: {text}")
    parsed = [_field(f, i) for i, f in enumerate(fields)]
    return Schedule(*parsed, dom_star=fields[2] in ("*", "?"), dow_star=fields[4] in ("*", "?"))


def most_recent(s: Schedule, earliest: datetime, now: datetime) -> tuple[datetime | None, int]:
    """(latest schedule time in (earliest, now], number of missed times), as getMostRecentScheduleTime."""
    last, missed, t = None, 0, earliest
    while True:
        t = s.next_after(t)
        if t > now:
            return last, missed
        last, missed = t, missed + 1
        if missed > 100:  # upstream gives up counting ("too many missed start times")
            return last, missed


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
