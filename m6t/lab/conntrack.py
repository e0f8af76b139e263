"""Reading a NAT box's UDP mappings from `conntrack -L` output."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NatMapping:
    """One UDP conntrack entry as a NAT mapping: inside endpoint -> outside endpoint, talking to remote."""

    inside_addr: str
    inside_port: int
    outside_addr: str
    outside_port: int
    remote_addr: str
    remote_port: int
    timeout: int
    replied: bool


def parse_udp_entries(text: str) -> list[NatMapping]:
    """Parse `conntrack -L -p udp` lines; lines that are not UDP entries are ignored."""
    mappings = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3 or fields[0] != "udp" or not fields[2].isdigit():
            continue
        # The first src/dst/sport/dport group is the original direction, the second the reply.
        groups: list[dict[str, str]] = [{}, {}]
        index = 0
        for field in fields[3:]:
            key, sep, value = field.partition("=")
            if not sep or key not in ("src", "dst", "sport", "dport"):
                continue
            if key in groups[index]:
                index += 1
                if index > 1:
                    break
            groups[index][key] = value
        original, reply = groups
        try:
            mappings.append(
                NatMapping(
                    inside_addr=original["src"],
                    inside_port=int(original["sport"]),
                    # What the remote answers to is the address and port the NAT chose.
                    outside_addr=reply["dst"],
                    outside_port=int(reply["dport"]),
                    remote_addr=original["dst"],
                    remote_port=int(original["dport"]),
                    timeout=int(fields[2]),
                    replied="[UNREPLIED]" not in fields,
                )
            )
        except (KeyError, ValueError):
            continue
    return mappings
