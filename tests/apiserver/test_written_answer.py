"""A protobuf create's answer is encoded straight from the dict the create stored (no JSON answer
built, no decode of the stored JSON) when, with the store's resourceVersion, that dict writes exactly
the stored bytes (the Store contract); otherwise the JSON answer serves and is re-encoded from its bytes."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp.test_utils import make_mocked_request

from servicenet.api.pb import memo, wire
from servicenet.apiserver import negotiation
from servicenet.store import Record
from servicenet.store._plan import encode_at
from tests.api.test_pb_codec import REALISTIC

PB_ACCEPT = "application/vnd.kubernetes.protobuf,application/json"


def _stored(obj: dict[str, Any], rev: int = 91) -> tuple[dict[str, Any], Record]:
    obj = {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}}
    return obj, Record("/registry/k", encode_at(obj, rev), rev, rev)


def _req(accept: str = PB_ACCEPT) -> Any:
    return make_mocked_request("POST", "/api/v1/x", headers={"Accept": accept})


def test_the_stored_dict_answers_when_it_writes_the_stored_bytes() -> None:
    for o in REALISTIC:
        obj, rec = _stored(o)
        resp = negotiation.created_answer(_req(), obj, rec, 201, {"Warning": "299 - \"w\""})
        if wire.types.message_for(o["apiVersion"], o["kind"]) is None:
            assert resp is None, o["kind"]
            continue
        assert resp is not None, o["kind"]
        assert resp.status == 201 and resp.content_type == negotiation.PROTOBUF
        assert resp.headers["Warning"] == "299 - \"w\""
        assert isinstance(resp.body, bytes)
        assert resp.body == wire.encode(orjson.loads(rec.value)), o["kind"]  # the stored object, exactly


def test_anything_else_leaves_the_answer_to_the_json_path() -> None:
    obj, rec = _stored(REALISTIC[0])
    assert negotiation.created_answer(_req("application/json"), obj, rec, 201, None) is None
    assert negotiation.created_answer(_req("application/json;q=0.9,application/vnd.kubernetes.protobuf;q=0.5"),
                                      obj, rec, 201, None) is None
    assert negotiation.created_answer(_req(), obj, obj, 201, None) is None  # a dry run answers the dict
    assert negotiation.created_answer(_req(), {**obj, "metadata": "x"}, rec, 201, None) is None


def test_a_dict_the_encoder_refuses_leaves_the_answer_to_the_json_path() -> None:
    obj, rec = _stored(REALISTIC[0])
    memo.clear()  # nothing kept that would answer for the fragment's JSON text
    obj["data"] = orjson.Fragment(orjson.dumps(obj["data"]))  # writes the same JSON, but is not a dict
    assert negotiation.created_answer(_req(), obj, rec, 201, None) is None
