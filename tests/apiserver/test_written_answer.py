"""A protobuf create's answer is encoded from the dict the create stored (no decode of the stored JSON)
when, with the store's resourceVersion, it writes exactly the stored bytes; otherwise from those bytes."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp.test_utils import make_mocked_request

from servicenet.api.pb import memo
from servicenet.apiserver import negotiation
from servicenet.store import Record
from servicenet.store._plan import encode_at
from tests.api.test_pb_codec import REALISTIC

PB_ACCEPT = "application/vnd.kubernetes.protobuf,application/json"


def _stored(obj: dict[str, Any], rev: int = 91) -> tuple[dict[str, Any], Record]:
    obj = {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}}
    return obj, Record("/registry/k", encode_at(obj, rev), rev, rev)


def test_the_stored_dict_answers_when_it_writes_the_stored_bytes() -> None:
    for o in REALISTIC:
        obj, rec = _stored(o)
        req = make_mocked_request("POST", "/api/v1/x", headers={"Accept": PB_ACCEPT})
        negotiation.keep_written(req, obj, rec)
        got = negotiation._written(req, rec.value + b"\n")
        assert got is not None and got == orjson.loads(rec.value), o["kind"]


def test_anything_else_is_decoded_from_the_answer() -> None:
    obj, rec = _stored(REALISTIC[0])
    json_only = make_mocked_request("POST", "/api/v1/x", headers={"Accept": "application/json"})
    negotiation.keep_written(json_only, obj, rec)
    assert negotiation._written(json_only, rec.value + b"\n") is None  # not noted for JSON clients
    req = make_mocked_request("POST", "/api/v1/x", headers={"Accept": PB_ACCEPT})
    negotiation.keep_written(req, obj, rec)
    assert negotiation._written(req, rec.value + b"x") is None  # not the record's answer
    assert negotiation._written(req, b"{}\n") is None
    obj["data"] = {"changed": "after the write"}  # the dict no longer writes the stored bytes
    assert negotiation._written(req, rec.value + b"\n") is None
    dry = make_mocked_request("POST", "/api/v1/x", headers={"Accept": PB_ACCEPT})
    negotiation.keep_written(dry, obj, obj)  # a dry run answers the dict itself: nothing noted
    assert negotiation._written(dry, orjson.dumps(obj) + b"\n") is None


def test_a_dict_the_encoder_refuses_falls_back_to_the_stored_bytes() -> None:
    obj, rec = _stored(REALISTIC[0])
    memo.clear()  # nothing kept that would answer for the fragment's JSON text
    req = make_mocked_request("POST", "/api/v1/x", headers={"Accept": PB_ACCEPT})
    obj["data"] = orjson.Fragment(orjson.dumps(obj["data"]))  # writes the same JSON, but is not a dict
    negotiation.keep_written(req, obj, rec)
    assert negotiation._written(req, rec.value + b"\n") is not None
    assert negotiation._encode_written(req, rec.value + b"\n") is None  # the answer is decoded instead
