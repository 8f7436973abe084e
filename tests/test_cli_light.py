"""A component started through the CLI carries only its own code: importing servicenet.cli must
not load the API server or the other components (each would cost every process its memory)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("servicenet.apiserver", "servicenet.up", "servicenet.proxy", "servicenet.node",
         "servicenet.controllers", "servicenet.ingress", "servicenet.dns", "google.protobuf")


def test_importing_the_cli_loads_no_component() -> None:
    code = ("import sys, servicenet.cli; print('\\n'.join(m for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = [m for m in out.split() if m.startswith(HEAVY)]
    assert loaded == []
