"""The Kubernetes protobuf codec: descriptors (:mod:`.types`), message ↔ JSON dict (:mod:`.convert`)
and the wire format (:mod:`.wire`). The object model stays the JSON dict; protobuf is an edge codec."""
