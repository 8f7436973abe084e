"""A tiny ``agnhost`` subset: ``serve-hostname [--port N]`` and ``netexec [--http-port N]``; else idle."""

from __future__ import annotations

import sys

from servicenet.node.images import idle, serve_hostname


def main(argv: list[str]) -> None:
    if argv and argv[0] in ("serve-hostname", "netexec"):
        port = 9376 if argv[0] == "serve-hostname" else 8080
        for a in argv[1:]:
            if a.startswith("--port=") or a.startswith("--http-port="):
                port = int(a.split("=", 1)[1])
        serve_hostname.main([f"--port={port}"])
    else:
        idle.main()


if __name__ == "__main__":
    main(sys.argv[1:])
