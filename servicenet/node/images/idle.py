"""busybox / dnsutils stand-in: do nothing until terminated (for ``kubectl exec``)."""

import signal
import sys


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
