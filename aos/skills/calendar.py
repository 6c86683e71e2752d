"""calendar.* skills: free slots from iCalendar data, creating events, business-day arithmetic.

All three are pure functions of their args (no clock, no network), so a replay
gives the same bytes. Times are computed as aware datetimes and compared in UTC:
Python's arithmetic on two datetimes sharing a tzinfo is wall-clock arithmetic,
which is wrong across a DST change.
"""

from __future__ import annotations

import json
import uuid
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aos.skills.base import CostModel, RetryPolicy, SideEffect, Skill, SkillContext, SkillError, SkillResult

if TYPE_CHECKING:  # at run time icalendar is imported where a calendar is read or written (warm_up in a worker),
    import icalendar  # not when the skills are merely loaded (`aos skills list`)

Interval = tuple[datetime, datetime]  # aware, UTC, half-open [start, end)

_WEEKDAYS = {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 7},
             "minItems": 1, "uniqueItems": True, "default": [1, 2, 3, 4, 5],
             "description": "ISO weekday numbers (1 = Monday … 7 = Sunday)"}


# --- parsing args -------------------------------------------------------------------------


def _zone(name: str) -> ZoneInfo:
    # "localtime" resolves to the host's zone: a result that depends on the machine is not pure
    if name == "localtime":
        raise SkillError("TIMEZONE_UNKNOWN", "timezone 'localtime' is host-dependent; name an IANA zone")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise SkillError("TIMEZONE_UNKNOWN", f"unknown IANA timezone {name!r} (e.g. 'Europe/Paris')",
                         details={"timezone": name}) from None


def _parse_iso(value: str, field: str) -> date | datetime:
    """A date when the text is a date only, else a datetime (naive or aware)."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise SkillError("SKILL_ARGS_INVALID", f"args.{field}: {value!r} is not an ISO 8601 date or datetime",
                         details={"path": f"args.{field}"}) from None


def _parse_date(value: str, field: str) -> date:
    parsed = _parse_iso(value, field)
    if isinstance(parsed, datetime):
        raise SkillError("SKILL_ARGS_INVALID", f"args.{field}: {value!r} is not an ISO 8601 date (YYYY-MM-DD)",
                         details={"path": f"args.{field}"})
    return parsed


def _aware(value: date | datetime, tz: tzinfo) -> datetime:
    """A date becomes its midnight in ``tz``; a floating (naive) time is read in ``tz``."""
    if not isinstance(value, datetime):
        return datetime.combine(value, time(), tzinfo=tz)
    return value.replace(tzinfo=tz) if value.tzinfo is None else value


def _minutes(hhmm: str, field: str) -> int:
    try:
        hours, minutes = (int(p) for p in hhmm.split(":"))
    except ValueError:
        hours, minutes = -1, -1
    if hhmm == "24:00":
        return 1440
    if not (0 <= hours < 24 and 0 <= minutes < 60):
        raise SkillError("CALENDAR_RANGE_INVALID", f"working_hours.{field} {hhmm!r} is not HH:MM")
    return hours * 60 + minutes


# --- busy intervals from ICS --------------------------------------------------------------


def _import_icalendar() -> None:
    """A worker imports icalendar and dateutil before it forks (``warm_up``), not in a step's time limit."""
    import dateutil.rrule  # noqa: F401
    import icalendar  # noqa: F401


def _parse_calendars(text: str, index: int) -> list[icalendar.Calendar]:
    import icalendar

    try:
        cals = icalendar.Calendar.from_ical(text, multiple=True)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise SkillError("ICS_PARSE_ERROR", f"ics[{index}] is not valid iCalendar: {exc}",
                         details={"calendar": index}) from None
    if not cals or any(c.name != "VCALENDAR" for c in cals):
        raise SkillError("ICS_PARSE_ERROR", f"ics[{index}] holds no BEGIN:VCALENDAR … END:VCALENDAR",
                         details={"calendar": index})
    return cals


def _decoded_time(event: icalendar.cal.Component, prop: str, index: int) -> date | datetime | None:
    if prop not in event:
        return None
    value = event.decoded(prop)
    if not isinstance(value, date):  # icalendar keeps an undecodable value as text
        raise SkillError("ICS_PARSE_ERROR", f"ics[{index}]: {prop} of event {event.get('UID')!s} "
                         f"is not a date or date-time", details={"calendar": index, "property": prop})
    return value


def _values(event: icalendar.cal.Component, prop: str) -> list[date | datetime]:
    """Every date/date-time of a multi-valued property (EXDATE, RDATE), across repeated lines."""
    raw = event.get(prop)
    lines = raw if isinstance(raw, list) else [raw] if raw is not None else []
    out: list[date | datetime] = []
    for line in lines:
        for item in line.dts:
            dt = item.dt[0] if isinstance(item.dt, tuple) else item.dt  # a PERIOD counts from its start
            out.append(dt)
    return out


def _like(value: date | datetime, start: datetime) -> datetime:
    """An EXDATE/RDATE/UNTIL value made comparable with the (aware) DTSTART it belongs to."""
    if not isinstance(value, datetime):
        return datetime.combine(value, start.timetz())
    return value.replace(tzinfo=start.tzinfo) if value.tzinfo is None else value


def _recurrences(event: icalendar.cal.Component, start: datetime, lo: datetime,
                 hi: datetime) -> Iterable[datetime]:
    """Instance starts of ``event`` that may touch [lo, hi); just DTSTART when it does not recur."""
    rules = event.get("RRULE")
    rules = rules if isinstance(rules, list) else [rules] if rules is not None else []
    rdates = _values(event, "RDATE")
    if not rules and not rdates:
        return [start]
    from dateutil.rrule import rruleset, rrulestr
    from icalendar.prop import vRecur

    rset = rruleset()
    for rule in rules:
        parts = dict(rule)
        until = parts.pop("UNTIL", None)
        parsed = rrulestr(vRecur(parts).to_ical().decode(), dtstart=start)
        if until:
            # dateutil wants UNTIL as aware as DTSTART; an all-day UNTIL includes its whole day
            end = until[0] if isinstance(until[0], datetime) else datetime.combine(until[0], time(23, 59, 59))
            parsed = parsed.replace(until=_like(end, start))
        rset.rrule(parsed)
    for rdate in rdates:
        rset.rdate(_like(rdate, start))
    for exdate in _values(event, "EXDATE"):
        rset.exdate(_like(exdate, start))
    return rset.between(lo, hi, inc=True)


def _busy(texts: list[str], tz: ZoneInfo, lo: datetime, hi: datetime) -> list[Interval]:
    """Merged busy intervals (UTC) of every opaque, non-cancelled VEVENT touching [lo, hi)."""
    intervals: list[Interval] = []
    for index, text in enumerate(texts):
        events = [ev for cal in _parse_calendars(text, index) for ev in cal.walk("VEVENT")]
        try:
            intervals.extend(_calendar_busy(events, tz, lo, hi, index))
        except (ValueError, TypeError, KeyError, OverflowError) as exc:
            raise SkillError("ICS_PARSE_ERROR", f"ics[{index}]: cannot read an event: {exc}",
                             details={"calendar": index}) from None
    merged: list[Interval] = []
    for s, e in sorted(intervals):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def _calendar_busy(events: list[icalendar.cal.Component], tz: ZoneInfo, lo: datetime, hi: datetime,
                   index: int) -> Iterator[Interval]:
    # An event with RECURRENCE-ID replaces one instance of its series (even when it is cancelled).
    replaced = set()
    for ev in events:
        rid = _decoded_time(ev, "RECURRENCE-ID", index)
        if rid is not None:
            replaced.add((str(ev.get("UID")), _aware(rid, tz).astimezone(UTC)))
    for ev in events:
        if str(ev.get("STATUS", "")).upper() == "CANCELLED" or str(ev.get("TRANSP", "")).upper() == "TRANSPARENT":
            continue
        dtstart = _decoded_time(ev, "DTSTART", index)
        if dtstart is None:
            continue
        all_day = not isinstance(dtstart, datetime)
        start = _aware(dtstart, tz)
        dtend = _decoded_time(ev, "DTEND", index)
        if dtend is not None and all_day and not isinstance(dtend, datetime):
            length = dtend - dtstart  # whole days, whatever DST does to their hours
        elif dtend is not None:
            length = _aware(dtend, tz).astimezone(UTC) - start.astimezone(UTC)
        elif "DURATION" in ev:
            length = ev.decoded("DURATION")
        else:
            length = timedelta(days=1) if all_day else timedelta(0)  # RFC 5545 §3.6.1
        if length <= timedelta(0):
            continue
        uid = str(ev.get("UID"))
        is_override = "RECURRENCE-ID" in ev
        for inst in _recurrences(ev, start, lo - length - timedelta(days=1), hi):
            if not is_override and (uid, inst.astimezone(UTC)) in replaced:
                continue
            if all_day:
                # whole local days, so a 23- or 25-hour DST day is blocked exactly
                first = inst.date()
                s = _aware(first, tz)
                e = _aware(first + timedelta(days=max(1, length.days)), tz)
            else:
                s = inst
                e = inst.astimezone(UTC) + length
            s, e = s.astimezone(UTC), e.astimezone(UTC)
            if s < hi and e > lo:
                yield s, e


# --- slots ----------------------------------------------------------------------------------


def _local(day: date, minute: int, tz: ZoneInfo) -> datetime | None:
    """The instant of wall-clock ``minute`` of ``day``; None when DST skips that wall time."""
    naive = datetime.combine(day, time()) + timedelta(minutes=minute)
    aware = naive.replace(tzinfo=tz)
    if aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != naive:
        return None
    return aware


def _slots(busy: list[Interval], tz: ZoneInfo, lo: datetime, hi: datetime, hours: tuple[int, int],
           days: set[int], duration: timedelta, step: int, limit: int) -> list[dict[str, str]]:
    ends = [e for _, e in busy]
    slots: list[dict[str, str]] = []
    day, last = lo.astimezone(tz).date(), hi.astimezone(tz).date()
    while day <= last and len(slots) < limit:
        if day.isoweekday() in days:
            closing = (datetime.combine(day, time()) + timedelta(minutes=hours[1])).replace(tzinfo=tz)
            closing = closing.astimezone(UTC)
            minute = -(-hours[0] // step) * step  # starts sit on the local clock's multiples of step
            while minute < hours[1] and len(slots) < limit:
                local = _local(day, minute, tz)
                if local is None:
                    minute += step
                    continue
                s = local.astimezone(UTC)
                e = s + duration
                if e > closing or e > hi:
                    break
                i = bisect_right(ends, s)
                if s < lo:
                    minute += step
                elif i < len(busy) and busy[i][0] < e:
                    free = busy[i][1].astimezone(tz)
                    if free.date() > day:
                        break
                    wall = free.hour * 60 + free.minute + (1 if free.second or free.microsecond else 0)
                    minute = max(minute + step, -(-wall // step) * step)
                else:
                    slots.append({"start": local.isoformat(), "end": e.astimezone(tz).isoformat()})
                    minute += step
        day += timedelta(days=1)
    return slots


class FreeSlots(Skill):
    name = "calendar.free_slots"
    version = 1
    summary_text = "Free slots in calendars"
    description = ("Free meeting slots of `duration_minutes` from one or more iCalendar (ICS) calendars, within "
                   "working hours and days in `timezone`. Busy time is every VEVENT except TRANSP:TRANSPARENT and "
                   "STATUS:CANCELLED, with RRULE/RDATE/EXDATE/RECURRENCE-ID expanded; all-day events block the "
                   "whole local day; floating times are read in `timezone`. `start`/`end` are ISO dates or "
                   "datetimes (a date means its local midnight; the range is [start, end)). Slot starts sit on "
                   "multiples of `granularity_minutes` of the local clock.")
    input_schema = {
        "type": "object",
        "required": ["ics", "start", "end", "timezone", "duration_minutes"],
        "additionalProperties": False,
        "properties": {
            "ics": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                    "description": "VCALENDAR text, or a list of them (merged)"},
            "start": {"type": "string", "description": "ISO 8601 date or datetime"},
            "end": {"type": "string", "description": "ISO 8601 date or datetime (exclusive)"},
            "timezone": {"type": "string", "description": "IANA time zone, e.g. Europe/Paris"},
            "working_hours": {
                "type": "object", "additionalProperties": False, "required": ["start", "end"],
                "properties": {"start": {"type": "string"}, "end": {"type": "string"}},
                "default": {"start": "09:00", "end": "17:00"}, "description": "local HH:MM (end may be 24:00)",
            },
            "working_days": _WEEKDAYS,
            "duration_minutes": {"type": "integer", "minimum": 1, "maximum": 1440},
            "granularity_minutes": {"type": "integer", "minimum": 1, "maximum": 1440, "default": 15},
            "max_slots": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
        },
    }
    output_schema = {
        "type": "object", "required": ["slots", "timezone"],
        "properties": {"slots": {"type": "array", "items": {"type": "object"}}, "timezone": {"type": "string"}},
    }
    side_effect = SideEffect.PURE
    deterministic = True
    cost_model = CostModel(fixed_usd=0.0, latency_ms=20.0)
    default_timeout_s = 30.0
    default_retry = RetryPolicy(max_attempts=1)
    recommended = 5

    def warm_up(self) -> None:
        _import_icalendar()

    def run(self, args: dict[str, Any], ctx: SkillContext) -> SkillResult:
        tz = _zone(args["timezone"])
        lo = _aware(_parse_iso(args["start"], "start"), tz)
        hi = _aware(_parse_iso(args["end"], "end"), tz)
        if hi <= lo:
            raise SkillError("CALENDAR_RANGE_INVALID", "end must be after start")
        if hi - lo > timedelta(days=366):
            raise SkillError("CALENDAR_RANGE_INVALID", "the range may span at most 366 days")
        wh = args.get("working_hours") or {"start": "09:00", "end": "17:00"}
        hours = (_minutes(wh["start"], "start"), _minutes(wh["end"], "end"))
        if hours[0] >= hours[1]:
            raise SkillError("CALENDAR_RANGE_INVALID", "working_hours.start must be before working_hours.end")
        texts = [args["ics"]] if isinstance(args["ics"], str) else list(args["ics"])
        busy = _busy(texts, tz, lo.astimezone(UTC), hi.astimezone(UTC))
        slots = _slots(busy, tz, lo.astimezone(UTC), hi.astimezone(UTC), hours,
                       set(args.get("working_days") or [1, 2, 3, 4, 5]),
                       timedelta(minutes=args["duration_minutes"]),
                       args.get("granularity_minutes", 15), args.get("max_slots", 50))
        return SkillResult(output={"slots": slots, "timezone": args["timezone"]})


# --- create_event -------------------------------------------------------------------------

_EMAIL = {"type": "string", "pattern": r"^(mailto:)?[^@\s]+@[^@\s]+$"}


def _mailto(address: str) -> str:
    return "mailto:" + address.removeprefix("mailto:")


class CreateEvent(Skill):
    name = "calendar.create_event"
    version = 1
    summary_text = "Write an iCalendar event"
    description = ("Create an iCalendar (RFC 5545) VCALENDAR with one VEVENT. `start` (and `end`) are ISO "
                   "datetimes read in `timezone` when they carry no offset; give `end` or `duration_minutes`. "
                   "Deterministic: UID defaults to a UUID5 of the step's idempotency key, DTSTAMP is `start`.")
    input_schema = {
        "type": "object",
        "required": ["summary", "start", "timezone"],
        "oneOf": [{"required": ["end"]}, {"required": ["duration_minutes"]}],
        "additionalProperties": False,
        "properties": {
            "summary": {"type": "string", "minLength": 1},
            "start": {"type": "string", "description": "ISO 8601 datetime"},
            "end": {"type": "string", "description": "ISO 8601 datetime"},
            "duration_minutes": {"type": "integer", "minimum": 1},
            "timezone": {"type": "string", "description": "IANA time zone, e.g. Europe/Paris"},
            "description": {"type": "string"},
            "location": {"type": "string"},
            "attendees": {"type": "array", "items": _EMAIL},
            "organizer": _EMAIL,
            "uid": {"type": "string", "minLength": 1},
        },
    }
    output_schema = {"type": "object", "required": ["ics", "uid"],
                     "properties": {"ics": {"type": "string"}, "uid": {"type": "string"}}}
    side_effect = SideEffect.PURE
    deterministic = True
    cost_model = CostModel(fixed_usd=0.0, latency_ms=5.0)
    default_timeout_s = 10.0
    default_retry = RetryPolicy(max_attempts=1)
    recommended = None

    def warm_up(self) -> None:
        _import_icalendar()

    def run(self, args: dict[str, Any], ctx: SkillContext) -> SkillResult:
        tz = _zone(args["timezone"])
        start = self._datetime(args["start"], "start", tz)
        if "end" in args:
            end = self._datetime(args["end"], "end", tz)
        else:
            end = (start.astimezone(UTC) + timedelta(minutes=args["duration_minutes"])).astimezone(tz)
        if end <= start:
            raise SkillError("CALENDAR_RANGE_INVALID", "end must be after start")
        seed = ctx.idempotency_key or json.dumps(args, sort_keys=True, separators=(",", ":"))
        uid = args.get("uid") or f"{uuid.uuid5(uuid.NAMESPACE_URL, 'aos:calendar.create_event:' + seed)}@aos"

        import icalendar

        cal = icalendar.Calendar()
        cal.add("prodid", "-//AOS//calendar.create_event 1//EN")
        cal.add("version", "2.0")
        cal.add("calscale", "GREGORIAN")
        event = icalendar.Event()
        event.add("uid", uid)
        event.add("dtstamp", start.astimezone(UTC))  # not the clock: replay must give the same bytes
        event.add("dtstart", start)
        event.add("dtend", end)
        event.add("summary", args["summary"])
        for key in ("description", "location"):
            if args.get(key):
                event.add(key, args[key])
        if args.get("organizer"):
            event.add("organizer", _mailto(args["organizer"]))
        for attendee in args.get("attendees", []):
            event.add("attendee", _mailto(attendee),
                      parameters={"ROLE": "REQ-PARTICIPANT", "PARTSTAT": "NEEDS-ACTION", "RSVP": "TRUE"})
        cal.add_component(event)
        # a VTIMEZONE covering just the event's years keeps the text short and the bytes stable
        cal.add_missing_timezones(first_date=date(start.year, 1, 1), last_date=date(end.year + 1, 1, 1))
        return SkillResult(output={"ics": cal.to_ical().decode(), "uid": uid})

    @staticmethod
    def _datetime(value: str, field: str, tz: ZoneInfo) -> datetime:
        parsed = _parse_iso(value, field)
        if not isinstance(parsed, datetime):
            raise SkillError("SKILL_ARGS_INVALID", f"args.{field}: {value!r} is a date; give a datetime",
                             details={"path": f"args.{field}"})
        return _aware(parsed, tz).astimezone(tz)


# --- business_days ------------------------------------------------------------------------


class BusinessDays(Skill):
    name = "calendar.business_days"
    version = 1
    summary_text = "Add or count business days"
    description = ("Business-day arithmetic. With `add`: the date that many business days after (or, negative, "
                   "before) `date`; `date` itself is never counted, so Friday + 1 is Monday and Saturday + 1 is "
                   "Monday, and adding 0 returns `date` unchanged even on a weekend or holiday. With `until`: "
                   "the number of business days in [date, until), negative when `until` is before `date`. "
                   "Business days are `working_days` (default Monday–Friday) that are not in `holidays`.")
    input_schema = {
        "type": "object",
        "required": ["date"],
        "oneOf": [{"required": ["add"]}, {"required": ["until"]}],
        "additionalProperties": False,
        "properties": {
            "date": {"type": "string", "description": "ISO date YYYY-MM-DD"},
            "add": {"type": "integer", "minimum": -100000, "maximum": 100000},
            "until": {"type": "string", "description": "ISO date YYYY-MM-DD (exclusive)"},
            "holidays": {"type": "array", "items": {"type": "string"}},
            "working_days": _WEEKDAYS,
        },
    }
    output_schema = {"type": "object", "properties": {"date": {"type": "string"},
                                                      "business_days": {"type": "integer"}}}
    side_effect = SideEffect.PURE
    deterministic = True
    cost_model = CostModel(fixed_usd=0.0, latency_ms=1.0)
    default_timeout_s = 10.0
    default_retry = RetryPolicy(max_attempts=1)
    recommended = None

    def run(self, args: dict[str, Any], ctx: SkillContext) -> SkillResult:
        day = _parse_date(args["date"], "date")
        holidays = {_parse_date(h, f"holidays[{i}]") for i, h in enumerate(args.get("holidays", []))}
        weekdays = set(args.get("working_days") or [1, 2, 3, 4, 5])
        try:
            if "add" in args:
                return SkillResult(output={"date": _add(day, args["add"], weekdays, holidays).isoformat()})
            until = _parse_date(args["until"], "until")
            if until >= day:
                return SkillResult(output={"business_days": _count(day, until, weekdays, holidays)})
            return SkillResult(output={"business_days": -_count(until, day, weekdays, holidays)})
        except OverflowError:
            raise SkillError("CALENDAR_RANGE_INVALID", "the result falls outside the years 1–9999") from None


def _add(day: date, n: int, weekdays: set[int], holidays: set[date]) -> date:
    step = timedelta(days=1 if n > 0 else -1)
    remaining = abs(n)
    while remaining:
        day += step
        if day.isoweekday() in weekdays and day not in holidays:
            remaining -= 1
    return day


def _count(first: date, stop: date, weekdays: set[int], holidays: set[date]) -> int:
    """Business days in [first, stop), by whole weeks so a long span costs nothing."""
    weeks, extra = divmod((stop - first).days, 7)
    total = weeks * len(weekdays)
    total += sum(1 for i in range(extra) if (first + timedelta(days=weeks * 7 + i)).isoweekday() in weekdays)
    total -= sum(1 for h in holidays if first <= h < stop and h.isoweekday() in weekdays)
    return total


SKILLS: list[Skill] = [FreeSlots(), CreateEvent(), BusinessDays()]
