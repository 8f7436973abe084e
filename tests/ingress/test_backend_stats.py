"""Per-backend counters from HAProxy's ``show stat`` (pure): parsing, and totals kept monotonic
across a reload's fresh counters."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from servicenet.ingress import backend_stats as bs

HEADER = ("# pxname,svname,qcur,stot,bout,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,"
          "type,\n")


def _stat(*rows: tuple[str, str, int, int, int, int]) -> str:
    """Rows of (backend, svname, bytes out, 2xx, 4xx, 5xx)."""
    return HEADER + "".join(f"{be},{sv},0,9,{b},0,{ok},,{c4},{c5},0,1,\n" for be, sv, b, ok, c4, c5 in rows) + "\n"


def test_parse_takes_backend_rows_and_reads_empty_cells_as_zero() -> None:
    got = bs.parse(_stat(("be_a", "BACKEND", 100, 3, 1, 0), ("be_a", "s1", 7, 7, 7, 7), ("fe", "FRONTEND", 1, 1, 1, 1)))
    assert got == {"be_a": (0, 3, 0, 1, 0, 0, 100)}
    assert bs.parse("") == {} and bs.parse("Unknown command\n") == {}
    assert bs.parse("# pxname,svname\nbe,BACKEND\n") == {}  # fields missing: nothing rather than wrong


def test_totals_survive_a_reset_and_are_exported() -> None:
    t = bs.Totals()
    t.update(bs.parse(_stat(("be_a", "BACKEND", 100, 3, 1, 0))))
    t.update(bs.parse(_stat(("be_a", "BACKEND", 150, 5, 1, 0), ("be_b", "BACKEND", 10, 1, 0, 1))))
    assert t.totals() == {"be_a": (0, 5, 0, 1, 0, 0, 150), "be_b": (0, 1, 0, 0, 1, 0, 10)}
    t.update(bs.parse(_stat(("be_a", "BACKEND", 20, 1, 0, 0))))  # a reload: a new worker counts from 0
    t.update(bs.parse(_stat(("be_a", "BACKEND", 40, 2, 0, 0))))
    assert t.totals()["be_a"] == (0, 7, 0, 1, 0, 0, 190)
    reg = CollectorRegistry()
    reg.register(bs.Collector(t))
    text = generate_latest(reg).decode()
    assert 'servicenet_ingress_backend_responses_total{backend="be_a",code_class="2xx"} 7.0' in text, text
    assert 'servicenet_ingress_backend_responses_total{backend="be_b",code_class="5xx"} 1.0' in text, text
    assert 'servicenet_ingress_backend_response_bytes_total{backend="be_a"} 190.0' in text, text
