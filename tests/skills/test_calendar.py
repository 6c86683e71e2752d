"""calendar.free_slots, calendar.create_event and calendar.business_days through invoke_skill."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import pytest

from aos.config import load_settings
from aos.runtime.invoke import invoke_skill
from aos.skills.base import SkillContext
from aos.skills.calendar import SKILLS

SKILL = {s.name: s for s in SKILLS}
PARIS = ZoneInfo("Europe/Paris")


def ctx(key: str = "r1:s1:1") -> SkillContext:
    return SkillContext(run_id="r1", step_id="s1", attempt=1, tenant_id="t1",
                        settings=load_settings({}), idempotency_key=key)


def call(name: str, args: dict, key: str = "r1:s1:1"):
    outcome, _ = invoke_skill(SKILL[name], args, ctx(key))
    return outcome


def vcal(*events: str) -> str:
    body = "".join(f"BEGIN:VEVENT\n{e.strip()}\nEND:VEVENT\n" for e in events)
    text = f"BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//test//EN\n{body}END:VCALENDAR\n"
    return text.replace("\n", "\r\n")


def slots(ics, start: str, end: str, **extra) -> list[tuple[str, str]]:
    args = {"ics": ics, "start": start, "end": end, "timezone": "Europe/Paris", "duration_minutes": 60,
            "granularity_minutes": 60, **extra}
    outcome = call("calendar.free_slots", args)
    assert outcome.status == "ok", outcome.error
    assert outcome.output["timezone"] == "Europe/Paris"
    return [(s["start"], s["end"]) for s in outcome.output["slots"]]


def starts(ics, start: str, end: str, **extra) -> list[str]:
    return [s for s, _ in slots(ics, start, end, **extra)]


def day_hours(day: str, hours: list[int], offset: str = "+02:00") -> list[str]:
    return [f"{day}T{h:02d}:00:00{offset}" for h in hours]


# --- free_slots -----------------------------------------------------------------------------


def test_slots_avoid_a_busy_meeting_and_stay_in_working_hours():
    ics = vcal("UID:m1\nDTSTART;TZID=Europe/Paris:20260601T100000\nDTEND;TZID=Europe/Paris:20260601T113000")
    got = slots(ics, "2026-06-01", "2026-06-02", granularity_minutes=30)
    assert got[0] == ("2026-06-01T09:00:00+02:00", "2026-06-01T10:00:00+02:00")
    assert [s for s, _ in got] == (["2026-06-01T09:00:00+02:00"]
                                  + [f"2026-06-01T{h}+02:00" for h in
                                     ("11:30:00", "12:00:00", "12:30:00", "13:00:00", "13:30:00", "14:00:00",
                                      "14:30:00", "15:00:00", "15:30:00", "16:00:00")])


def test_each_slot_lasts_exactly_the_duration():
    got = slots(vcal(), "2026-06-01", "2026-06-02", duration_minutes=45, granularity_minutes=15)
    for s, e in got:
        assert datetime.fromisoformat(e) - datetime.fromisoformat(s) == timedelta(minutes=45)
    assert got[-1] == ("2026-06-01T16:15:00+02:00", "2026-06-01T17:00:00+02:00")


def test_weekly_rrule_blocks_every_week_except_the_exdate():
    ics = vcal("UID:weekly\nDTSTART;TZID=Europe/Paris:20260504T090000\nDTEND;TZID=Europe/Paris:20260504T120000\n"
               "RRULE:FREQ=WEEKLY;BYDAY=MO\nEXDATE;TZID=Europe/Paris:20260608T090000")
    got = starts(ics, "2026-06-01", "2026-06-16", working_days=[1])
    assert got == day_hours("2026-06-01", [12, 13, 14, 15, 16]) + \
        day_hours("2026-06-08", list(range(9, 17))) + day_hours("2026-06-15", [12, 13, 14, 15, 16])


def test_rrule_until_ends_the_series():
    ics = vcal("UID:daily\nDTSTART:20260601T070000Z\nDTEND:20260601T140000Z\n"
               "RRULE:FREQ=DAILY;UNTIL=20260602T070000Z")
    got = starts(ics, "2026-06-01", "2026-06-04")
    # 09:00-16:00 in Paris on 1 and 2 June (UNTIL is inclusive), nothing on the 3rd
    assert got == ["2026-06-01T16:00:00+02:00", "2026-06-02T16:00:00+02:00"] + \
        day_hours("2026-06-03", list(range(9, 17)))


def test_moved_occurrence_frees_its_old_time_and_blocks_the_new_one():
    ics = vcal("UID:standup\nDTSTART;TZID=Europe/Paris:20260601T090000\nDURATION:PT1H\nRRULE:FREQ=DAILY;COUNT=5",
               "UID:standup\nRECURRENCE-ID;TZID=Europe/Paris:20260602T090000\n"
               "DTSTART;TZID=Europe/Paris:20260602T150000\nDURATION:PT1H")
    got = starts(ics, "2026-06-02", "2026-06-03")
    assert got == day_hours("2026-06-02", [9, 10, 11, 12, 13, 14, 16])


def test_all_day_event_blocks_the_whole_local_day():
    ics = vcal("UID:offsite\nDTSTART;VALUE=DATE:20260602\nDTEND;VALUE=DATE:20260603")
    got = starts(ics, "2026-06-01", "2026-06-04")
    assert got == day_hours("2026-06-01", list(range(9, 17))) + day_hours("2026-06-03", list(range(9, 17)))


def test_cancelled_and_transparent_events_are_not_busy():
    ics = vcal("UID:c\nSTATUS:CANCELLED\nDTSTART;TZID=Europe/Paris:20260601T090000\n"
               "DTEND;TZID=Europe/Paris:20260601T170000",
               "UID:t\nTRANSP:TRANSPARENT\nDTSTART;TZID=Europe/Paris:20260601T090000\n"
               "DTEND;TZID=Europe/Paris:20260601T170000",
               "UID:o\nTRANSP:OPAQUE\nDTSTART;TZID=Europe/Paris:20260601T160000\nDTEND;TZID=Europe/Paris:20260601T170000")
    assert starts(ics, "2026-06-01", "2026-06-02") == day_hours("2026-06-01", list(range(9, 16)))


def test_two_calendars_are_merged():
    alice = vcal("UID:a\nDTSTART;TZID=Europe/Paris:20260601T090000\nDTEND;TZID=Europe/Paris:20260601T120000")
    bob = vcal("UID:b\nDTSTART:20260601T110000Z\nDTEND:20260601T150000Z")  # 13:00-17:00 in Paris
    assert starts([alice, bob], "2026-06-01", "2026-06-02") == ["2026-06-01T12:00:00+02:00"]
    assert len(starts([alice], "2026-06-01", "2026-06-02")) == 5


def test_floating_times_are_read_in_the_target_timezone():
    ics = vcal("UID:f\nDTSTART:20260601T090000\nDTEND:20260601T160000")
    assert starts(ics, "2026-06-01", "2026-06-02") == ["2026-06-01T16:00:00+02:00"]


def test_custom_vtimezone_is_honoured():
    ics = vcal("UID:x\nDTSTART;TZID=Office Time:20260601T080000\nDTEND;TZID=Office Time:20260601T150000").replace(
        "BEGIN:VEVENT", "BEGIN:VTIMEZONE\r\nTZID:Office Time\r\nBEGIN:STANDARD\r\nDTSTART:19700101T000000\r\n"
        "TZOFFSETFROM:+0100\r\nTZOFFSETTO:+0100\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\nBEGIN:VEVENT")
    # 08:00-15:00 at +01:00 is 09:00-16:00 in Paris summer time
    assert starts(ics, "2026-06-01", "2026-06-02") == ["2026-06-01T16:00:00+02:00"]


def test_dst_change_keeps_slots_at_local_working_hours():
    weekly = vcal("UID:w\nDTSTART;TZID=Europe/Paris:20260320T100000\nDTEND;TZID=Europe/Paris:20260320T110000\n"
                  "RRULE:FREQ=DAILY")
    got = slots(weekly, "2026-03-28", "2026-03-31", working_days=[1, 2, 3, 4, 5, 6, 7])
    by_day: dict[str, list[tuple[str, str]]] = {}
    for s, e in got:
        by_day.setdefault(s[:10], []).append((s[11:], e[11:]))
    before = [(f"{h:02d}:00:00+01:00", f"{h + 1:02d}:00:00+01:00") for h in (9, 11, 12, 13, 14, 15, 16)]
    after = [(a.replace("+01:00", "+02:00"), b.replace("+01:00", "+02:00")) for a, b in before]
    assert by_day == {"2026-03-28": before, "2026-03-29": after, "2026-03-30": after}


def test_round_the_clock_hours_skip_the_missing_dst_hour():
    got = slots(vcal(), "2026-03-29", "2026-03-30", working_days=[7],
                working_hours={"start": "00:00", "end": "24:00"})
    assert len(got) == 23  # the night of the change has no 02:00
    assert "2026-03-29T02:00:00+01:00" not in [s for s, _ in got]
    assert got[1] == ("2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00")


def test_max_slots_caps_the_list():
    got = starts(vcal(), "2026-06-01", "2026-07-01", max_slots=3)
    assert got == day_hours("2026-06-01", [9, 10, 11])


def test_free_slots_are_deterministic():
    ics = vcal("UID:m\nDTSTART;TZID=Europe/Paris:20260601T100000\nDTEND;TZID=Europe/Paris:20260601T110000\n"
               "RRULE:FREQ=DAILY;COUNT=10")
    args = {"ics": [ics, ics], "start": "2026-06-01", "end": "2026-06-12", "timezone": "Europe/Paris",
            "duration_minutes": 30}
    first, second = call("calendar.free_slots", args), call("calendar.free_slots", dict(args))
    assert first.status == "ok"
    assert first.hashable() == second.hashable()


@pytest.mark.parametrize("ics", ["this is not a calendar", "BEGIN:VEVENT\r\nUID:x\r\nEND:VEVENT\r\n",
                                 vcal("UID:x\nDTSTART:notadate\nDTEND:20260601T100000Z")])
def test_unparseable_ics_is_ics_parse_error(ics):
    outcome = call("calendar.free_slots", {"ics": [vcal(), ics], "start": "2026-06-01", "end": "2026-06-02",
                                           "timezone": "UTC", "duration_minutes": 30})
    assert outcome.status == "error"
    assert outcome.error.code == "ICS_PARSE_ERROR"
    assert outcome.error.details["calendar"] == 1


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "Europe", "../../etc/passwd", "localtime"])
def test_unknown_timezone_is_timezone_unknown(tz):
    outcome = call("calendar.free_slots", {"ics": vcal(), "start": "2026-06-01", "end": "2026-06-02",
                                           "timezone": tz, "duration_minutes": 30})
    assert outcome.error.code == "TIMEZONE_UNKNOWN"


@pytest.mark.parametrize("start,end,hours", [
    ("2026-06-02", "2026-06-01", None),
    ("2026-06-01", "2026-06-01", None),
    ("2026-01-01", "2027-01-03", None),
    ("2026-06-01", "2026-06-02", {"start": "17:00", "end": "09:00"}),
    ("2026-06-01", "2026-06-02", {"start": "9am", "end": "17:00"}),
])
def test_bad_range_or_hours_is_calendar_range_invalid(start, end, hours):
    args = {"ics": vcal(), "start": start, "end": end, "timezone": "UTC", "duration_minutes": 30}
    if hours:
        args["working_hours"] = hours
    assert call("calendar.free_slots", args).error.code == "CALENDAR_RANGE_INVALID"


def test_malformed_date_is_skill_args_invalid():
    outcome = call("calendar.free_slots", {"ics": vcal(), "start": "June 1st", "end": "2026-06-02",
                                           "timezone": "UTC", "duration_minutes": 30})
    assert outcome.error.code == "SKILL_ARGS_INVALID"


# --- create_event ---------------------------------------------------------------------------

EVENT = {"summary": "Design review", "start": "2026-06-01T14:00:00", "duration_minutes": 90,
         "timezone": "Europe/Paris", "description": "Line one\nline two; with, punctuation",
         "location": "Room 4", "attendees": ["ana@example.com", "mailto:bo@example.com"],
         "organizer": "lead@example.com"}


def test_created_event_parses_back_with_icalendar():
    outcome = call("calendar.create_event", EVENT)
    assert outcome.status == "ok", outcome.error
    cal = icalendar.Calendar.from_ical(outcome.output["ics"])
    (event,) = cal.walk("VEVENT")
    assert str(event["SUMMARY"]) == "Design review"
    assert str(event["DESCRIPTION"]) == EVENT["description"]
    assert str(event["LOCATION"]) == "Room 4"
    assert event.decoded("DTSTART") == datetime(2026, 6, 1, 14, 0, tzinfo=PARIS)
    assert event.decoded("DTEND") == datetime(2026, 6, 1, 15, 30, tzinfo=PARIS)
    assert [str(a) for a in event["ATTENDEE"]] == ["mailto:ana@example.com", "mailto:bo@example.com"]
    assert str(event["ORGANIZER"]) == "mailto:lead@example.com"
    assert str(event["UID"]) == outcome.output["uid"]
    assert outcome.output["uid"].endswith("@aos")
    assert event.decoded("DTSTAMP") == datetime(2026, 6, 1, 12, 0, tzinfo=ZoneInfo("UTC"))
    assert [tz["TZID"] for tz in cal.walk("VTIMEZONE")] == ["Europe/Paris"]


def test_create_event_is_byte_identical_for_the_same_args_and_key():
    first = call("calendar.create_event", EVENT, key="run9:book:1")
    second = call("calendar.create_event", dict(EVENT), key="run9:book:1")
    other = call("calendar.create_event", EVENT, key="run10:book:1")
    assert first.output["ics"] == second.output["ics"]
    assert first.output["uid"] == second.output["uid"]
    assert other.output["uid"] != first.output["uid"]
    fixed = call("calendar.create_event", {**EVENT, "uid": "fixed@example.com"})
    assert fixed.output["uid"] == "fixed@example.com"


def test_uid_comes_from_the_args_when_there_is_no_key():
    a = call("calendar.create_event", EVENT, key="")
    b = call("calendar.create_event", EVENT, key="")
    c = call("calendar.create_event", {**EVENT, "summary": "Other"}, key="")
    assert a.output["uid"] == b.output["uid"] != c.output["uid"]


def test_duration_counts_elapsed_time_across_the_dst_change():
    outcome = call("calendar.create_event", {"summary": "Night shift", "start": "2026-03-29T01:30:00",
                                             "duration_minutes": 60, "timezone": "Europe/Paris"})
    event = icalendar.Calendar.from_ical(outcome.output["ics"]).walk("VEVENT")[0]
    assert event.decoded("DTEND") == datetime(2026, 3, 29, 3, 30, tzinfo=PARIS)


def test_created_event_blocks_free_slots():
    ics = call("calendar.create_event", {"summary": "Busy", "start": "2026-06-01T09:00:00Z",
                                         "end": "2026-06-01T14:00:00Z", "timezone": "Europe/Paris"}).output["ics"]
    assert starts(ics, "2026-06-01", "2026-06-02") == day_hours("2026-06-01", [9, 10, 16])  # 11:00-16:00 busy


def test_create_event_rejects_end_before_start_and_both_end_and_duration():
    bad = {"summary": "x", "start": "2026-06-01T10:00:00", "end": "2026-06-01T09:00:00", "timezone": "UTC"}
    assert call("calendar.create_event", bad).error.code == "CALENDAR_RANGE_INVALID"
    both = {**bad, "end": "2026-06-01T11:00:00", "duration_minutes": 5}
    assert call("calendar.create_event", both).error.code == "SKILL_ARGS_INVALID"
    assert call("calendar.create_event", {**bad, "timezone": "Nowhere/City"}).error.code == "TIMEZONE_UNKNOWN"


# --- business_days --------------------------------------------------------------------------


def bdays(**args):
    outcome = call("calendar.business_days", args)
    assert outcome.status == "ok", outcome.error
    return outcome.output


def test_adding_business_days_skips_the_weekend():
    assert bdays(date="2026-05-29", add=1) == {"date": "2026-06-01"}   # Friday + 1 = Monday
    assert bdays(date="2026-05-30", add=1) == {"date": "2026-06-01"}   # Saturday + 1 = Monday
    assert bdays(date="2026-05-25", add=5) == {"date": "2026-06-01"}


def test_adding_business_days_skips_holidays():
    holidays = ["2026-12-24", "2026-12-25", "2027-01-01"]
    assert bdays(date="2026-12-23", add=3, holidays=holidays) == {"date": "2026-12-30"}
    assert bdays(date="2026-12-23", add=3) == {"date": "2026-12-28"}


def test_negative_add_goes_back():
    assert bdays(date="2026-06-01", add=-1) == {"date": "2026-05-29"}
    assert bdays(date="2026-12-28", add=-2, holidays=["2026-12-25"]) == {"date": "2026-12-23"}


def test_adding_zero_returns_the_date_even_on_a_weekend():
    assert bdays(date="2026-05-30", add=0) == {"date": "2026-05-30"}


def test_custom_working_days():
    # a Sunday-to-Thursday week
    assert bdays(date="2026-05-28", add=1, working_days=[7, 1, 2, 3, 4]) == {"date": "2026-05-31"}


def test_until_counts_business_days_in_a_half_open_range():
    assert bdays(date="2026-05-25", until="2026-06-01") == {"business_days": 5}
    assert bdays(date="2026-05-25", until="2026-05-25") == {"business_days": 0}
    assert bdays(date="2026-12-21", until="2027-01-04", holidays=["2026-12-25", "2027-01-01", "2026-12-26"]) \
        == {"business_days": 8}
    assert bdays(date="2026-06-01", until="2026-05-25") == {"business_days": -5}


def test_until_agrees_with_adding_over_a_long_span():
    holidays = [f"{y}-12-25" for y in range(2020, 2031)]
    count = bdays(date="2020-01-06", until="2030-06-15", holidays=holidays)["business_days"]
    end = date.fromisoformat(bdays(date="2020-01-03", add=count, holidays=holidays)["date"])
    # the count-th business day after the Friday before the span is the span's last business day
    assert end == date(2030, 6, 14)


def test_business_days_errors():
    assert call("calendar.business_days", {"date": "2026-13-01", "add": 1}).error.code == "SKILL_ARGS_INVALID"
    assert call("calendar.business_days", {"date": "2026-06-01"}).error.code == "SKILL_ARGS_INVALID"
    assert call("calendar.business_days", {"date": "9999-12-30", "add": 5}).error.code == "CALENDAR_RANGE_INVALID"
