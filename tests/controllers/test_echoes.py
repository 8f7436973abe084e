"""EchoHold: events on objects a controller writes, held while it syncs the key, wake the key
again only when they are not the echo of a write that sync made."""

from __future__ import annotations

from servicenet.controllers.echoes import EchoHold


def test_echo_of_own_write_is_dropped_others_wake() -> None:
    h = EchoHold()
    assert h.hold("endpointslices", "endpointslice", "ns/svc", "ns/svc-abc", 7, in_flight=True)
    assert not h.release("endpointslice", "ns/svc", {"ns/svc-abc": 7})  # our write came back early
    assert h.hold("endpointslices", "endpointslice", "ns/svc", "ns/svc-abc", 8, in_flight=True)
    assert h.release("endpointslice", "ns/svc", {"ns/svc-abc": 7})  # someone else's change
    assert not h.release("endpointslice", "ns/svc", {})  # nothing held any more


def test_endpoints_use_their_own_key_prefix_and_only_their_writer_holds() -> None:
    h = EchoHold()
    assert h.hold("endpoints", "endpoints", "ns/svc", "ns/svc", 5, in_flight=True)
    assert not h.release("endpoints", "ns/svc", {"ep:ns/svc": 5})
    assert not h.hold("endpointslices", "mirroring", "ns/svc", "ns/svc-m", 5, in_flight=True)
    assert not h.hold("pods", "endpointslice", "ns/svc", "ns/p", 5, in_flight=True)
    assert not h.hold("endpointslices", "endpointslice", "ns/svc", "ns/svc-abc", 5, in_flight=False)
