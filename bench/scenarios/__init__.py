"""The scenarios of the tunnel benchmark, in their default order (the baseline, socat, comes early)."""

from bench.scenarios.base import Scenario, Tunnel
from bench.scenarios.kernel import KernelScenario
from bench.scenarios.m6t import M6tScenario
from bench.scenarios.openvpn import OpenVpnScenario
from bench.scenarios.socat import SocatScenario

SCENARIOS: dict[str, type[Scenario]] = {
    KernelScenario.name: KernelScenario,
    SocatScenario.name: SocatScenario,
    OpenVpnScenario.name: OpenVpnScenario,
    M6tScenario.name: M6tScenario,
}

__all__ = ["SCENARIOS", "KernelScenario", "M6tScenario", "OpenVpnScenario", "Scenario", "SocatScenario", "Tunnel"]
