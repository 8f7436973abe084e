"""servicenet.api: the object model every package shares — resources, defaults, validation,
selectors, Tables, patches, views (:mod:`.views`) and well-known names (:mod:`.wellknown`).

May import: nothing else in servicenet. Must not do I/O (no sockets, processes, asyncio or files;
:mod:`.schema` only reads its bundled data file), so every component may import it.
"""
