"""CXone Data Extraction and host discovery without I/O: windows, jobs, the CSV (property-tested), hosts."""

from __future__ import annotations

import base64
import csv
import io
import json
from datetime import date, datetime, timezone

import pytest
from hypothesis import given, settings, strategies as st

from voxpipe_cxone.emulator.calls import CallCatalogue, render_csv
from voxpipe_cxone.extraction import (COLUMNS, ExtractionError, JobState, Next, Window, job_request, parse_bound,
                                      parse_job_id, parse_job_status, parse_time, read_csv, split_days, zone)
from voxpipe_cxone.hosts import (HostDiscoveryError, api_base_from_configuration, api_host_for_area,
                                 id_token_claims, tenant_of)

UTC = timezone.utc


def test_bounds_in_utc_and_named_zones():
    paris = zone("Europe/Paris")
    assert parse_bound("2026-11-29", UTC, end=False) == datetime(2026, 11, 29, tzinfo=UTC)
    assert parse_bound("2026-11-29", UTC, end=True) == datetime(2026, 11, 30, tzinfo=UTC)  # the whole day
    assert parse_bound("2026-11-29", paris, end=False) == datetime(2026, 11, 28, 23, tzinfo=UTC)
    assert parse_bound("2026-07-01T08:30", paris, end=False) == datetime(2026, 7, 1, 6, 30, tzinfo=UTC)  # CEST
    assert parse_bound("2026-07-01T08:30Z", paris, end=True) == datetime(2026, 7, 1, 8, 30, tzinfo=UTC)
    assert parse_bound("2026-07-01T08:30:00-05:00", UTC, end=False) == datetime(2026, 7, 1, 13, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="not a date"):
        parse_bound("29/11/2026", UTC, end=False)
    with pytest.raises(ValueError, match="IANA"):
        zone("Atlantis/Capital")


def test_windows_split_into_whole_utc_days():
    w = Window(datetime(2026, 11, 17, 22, tzinfo=UTC), datetime(2026, 11, 20, 1, tzinfo=UTC))
    assert split_days(w, 1) == [(date(2026, 11, 17), date(2026, 11, 18)), (date(2026, 11, 18), date(2026, 11, 19)),
                                (date(2026, 11, 19), date(2026, 11, 20)), (date(2026, 11, 20), date(2026, 11, 21))]
    assert split_days(w, 3) == [(date(2026, 11, 17), date(2026, 11, 20)), (date(2026, 11, 20), date(2026, 11, 21))]
    midnight = Window(datetime(2026, 11, 17, tzinfo=UTC), datetime(2026, 11, 18, tzinfo=UTC))
    assert split_days(midnight, 1) == [(date(2026, 11, 17), date(2026, 11, 18))]  # the end is exclusive
    assert job_request(date(2026, 11, 17), date(2026, 11, 18), "10") == {
        "entityName": "recording-interaction-metadata", "version": "10", "startDate": "2026-11-17",
        "endDate": "2026-11-18"}
    with pytest.raises(ValueError, match="ends before it starts"):
        Window(midnight.end, midnight.start)
    with pytest.raises(ValueError, match="longer than 366 days"):
        Window(datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC))


def test_job_ids_and_states():
    assert parse_job_id("abc-1") == "abc-1" and parse_job_id({"jobId": "j2"}) == "j2" and parse_job_id({"id": 7}) == "7"
    with pytest.raises(ExtractionError, match="no job id"):
        parse_job_id({"status": "ok"})
    url = "https://storage.example/x.csv?sig=SECRET"
    done = parse_job_status({"jobStatus": {"id": "j", "status": "SUCCEEDED", "result": {"url": url}}}, "j")
    assert done.state is JobState.SUCCEEDED and done.next is Next.DOWNLOAD and done.url == url
    assert "SECRET" not in repr(done)
    assert parse_job_status({"jobStatus": {"status": "queued"}}, "j").next is Next.POLL
    failed = parse_job_status({"jobStatus": {"status": "FAILED", "result": {"errorMessage": "boom"}}}, "j")
    assert failed.next is Next.FAIL and failed.error_message == "boom"
    for state in ("CANCELLED", "EXPIRED"):
        assert parse_job_status({"jobStatus": {"status": state}}, "j").next is Next.FAIL
    with pytest.raises(ExtractionError, match="SUCCEEDED without an http"):
        parse_job_status({"jobStatus": {"status": "SUCCEEDED", "result": {}}}, "j")
    with pytest.raises(ExtractionError, match="unknown status 'DONE'"):
        parse_job_status({"jobStatus": {"status": "DONE"}}, "j")
    with pytest.raises(ExtractionError, match="no jobStatus"):
        parse_job_status({"status": "RUNNING"}, "j")


@pytest.mark.parametrize("version", ["7", "10"])
def test_emulator_csv_of_both_entity_versions(version):
    cat = CallCatalogue({"100001": 12.5, "100002": 40.0}, calls_end=datetime(2026, 11, 20, tzinfo=UTC).timestamp(),
                        spacing=3600)
    data = render_csv([cat.get("100001"), cat.get("100002")], version)
    assert data.startswith(b"\xef\xbb\xbf")
    rows = read_csv(data, where="job 1")
    assert [r.contact_id for r in rows] == ["100001", "100002"]
    first = rows[0].facts
    call = cat.get("100001")
    assert first.segment_id == call.segment_id and first.agent_name == call.agent_name and first.skill == call.skill
    assert first.started_at == datetime(2026, 11, 19, 22, tzinfo=UTC)
    assert first.direction == call.direction.lower() and first.ani == call.ani and first.dnis == call.dnis


def test_missing_required_columns_and_bad_rows_are_named():
    with pytest.raises(ExtractionError, match=r"job 9: CSV header lacks required columns: contact_id \(one of: "
                                              r"Contact ID, Agent 1 Contact Number"):
        read_csv(b"\xef\xbb\xbfSegment ID,Segment Start Time\r\ns1,2026-11-29 10:00:00\r\n", where="job 9")
    with pytest.raises(ExtractionError, match="job 9: CSV line 3: Segment Start Time: 'soon' is not a time"):
        read_csv(b"Segment ID,Contact ID,Start Time\ns1,c1,2026-11-29 10:00:00\ns2,c2,soon\n", where="job 9")
    with pytest.raises(ExtractionError, match="CSV line 2: empty 'Contact ID'"):
        read_csv(b"Segment ID,Contact ID,Start Time\ns1,,2026-11-29 10:00:00\n", where="job 9")
    with pytest.raises(ExtractionError, match="not UTF-8"):
        read_csv(b"Segment ID,Contact ID,Start Time\n\xff\xfe,c,2026-11-29\n", where="job 9")
    with pytest.raises(ExtractionError, match="empty"):
        read_csv(b"", where="job 9")
    # other media are not recordings of calls; blank lines are nothing
    rows = read_csv(b"Media Type,Segment ID,Contact ID,Start Time\nChat,s1,c1,2026-11-29 10:00:00\n\n"
                    b"Voice,s2,c2,11/29/2026 1:04:05 PM\n", where="job 9")
    assert [(r.segment_id, r.facts.started_at) for r in rows] == [("s2", datetime(2026, 11, 29, 13, 4, 5, tzinfo=UTC))]


def test_times_of_the_report_formats():
    assert parse_time("2026-11-29T13:04:05.250+01:00") == datetime(2026, 11, 29, 12, 4, 5, 250000, tzinfo=UTC)
    assert parse_time("2026-11-29 13:04") == datetime(2026, 11, 29, 13, 4, tzinfo=UTC)


# a bare CR is left out: Python's csv writer leaves it unquoted under a LF line end (its ambiguity, not ours)
_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"), max_size=12)
_ids = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
_times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1)).map(
    lambda d: d.replace(microsecond=0))
_row = st.fixed_dictionaries({"segment_id": _ids, "contact_id": _ids, "started_at": _times, "agent_name": _text,
                              "skill": _text})


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(_row, max_size=6), unknown=st.lists(st.tuples(_ids.map(lambda s: "X " + s), _text), max_size=3,
                                                          unique_by=lambda t: t[0]),
       order=st.randoms(use_true_random=False), bom=st.booleans(), crlf=st.booleans(), quote_all=st.booleans(),
       aliases=st.tuples(*(st.sampled_from(COLUMNS[f]) for f in ("segment_id", "contact_id", "started_at",
                                                                   "agent_name", "skill"))))
def test_csv_parsing_is_independent_of_column_order_quoting_bom_and_unknown_columns(rows, unknown, order, bom, crlf,
                                                                                  quote_all, aliases):
    names = dict(zip(("segment_id", "contact_id", "started_at", "agent_name", "skill"), aliases))
    header = list(names.values()) + [name for name, _ in unknown]
    order.shuffle(header)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n" if crlf else "\n",
                        quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
    writer.writerow(header)
    by_header = {v: k for k, v in names.items()}
    for row in rows:
        cells = {**{n: v for n, v in unknown}}
        for column in header:
            if column in by_header:
                fact = by_header[column]
                value = row[fact]
                cells[column] = value.strftime("%Y-%m-%d %H:%M:%S") if fact == "started_at" else value
        writer.writerow([cells[c] for c in header])
    data = (b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode("utf-8")
    parsed = read_csv(data, where="job p")
    assert [(p.segment_id, p.contact_id, p.facts.started_at) for p in parsed] == \
        [(r["segment_id"], r["contact_id"], r["started_at"].replace(tzinfo=UTC)) for r in rows]
    assert [p.facts.agent_name for p in parsed] == [r["agent_name"].strip() or None for r in rows]
    assert [p.facts.skill for p in parsed] == [r["skill"].strip() or None for r in rows]


def _jwt(claims: object) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJub25lIn0.{payload}."


def test_hosts_from_the_id_token_and_the_tenant_configuration():
    claims = id_token_claims(_jwt({"area": "na1", "tenantId": "t-42"}))
    assert claims["area"] == "na1" and tenant_of(claims) == "t-42"
    assert api_host_for_area("na1") == "https://api-na1.niceincontact.com"
    assert api_host_for_area("EU1", "nicecxone.com") == "https://api-eu1.nicecxone.com"
    assert api_base_from_configuration({"apiEndpoint": "https://api-au1.niceincontact.com/"}) == \
        "https://api-au1.niceincontact.com"
    assert api_base_from_configuration({"area": "ca1", "domain": "niceincontact.com"}) == \
        "https://api-ca1.niceincontact.com"
    for bad in ("not-a-jwt", "a.b", _jwt([1, 2]), "a.!!!.c"):
        with pytest.raises(HostDiscoveryError):
            id_token_claims(bad)
    with pytest.raises(HostDiscoveryError, match="not a CXone area"):
        api_host_for_area("../evil")
    with pytest.raises(HostDiscoveryError, match="neither apiEndpoint nor area"):
        api_base_from_configuration({"tenantId": "x"})
