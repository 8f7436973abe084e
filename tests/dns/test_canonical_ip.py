"""canonical_ip's IPv4 fast path gives what ipaddress gives, for valid and invalid text alike."""

import ipaddress
import random

from servicenet.dns.model import canonical_ip


def reference(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def test_matches_ipaddress() -> None:
    cases = ["1.2.3.4", "0.0.0.0", "255.255.255.255", "199.249.250.251", "01.2.3.4", "1.2.3.04", "000.1.1.1",
             "256.1.1.1", "1.2.3", "1.2.3.4.5", " 1.2.3.4", "1.2.3.4 ", "1.2.3.4\n", "1.2.3.0x4", "\u0661.2.3.4",
             "1.2.3.4/32", "", "::1", "::ffff:1.2.3.4", "FE80::1", "2001:DB8:0:0::1", "fe80::1%eth0"]
    rnd = random.Random(7)
    octets = ["0", "00", "1", "01", "9", "10", "99", "100", "199", "200", "249", "250", "255", "256", "300", "a", ""]
    cases += [".".join(rnd.choice(octets) for _ in range(rnd.choice([3, 4, 4, 5]))) for _ in range(5000)]
    for text in cases:
        assert canonical_ip(text) == reference(text), text
    assert canonical_ip("FE80::1") == "fe80::1"
    assert canonical_ip("01.2.3.4") is None
