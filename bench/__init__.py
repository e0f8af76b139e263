"""m6t benchmarks: every figure is printed next to baselines measured in the same run, on the same machine.

`python -m bench.tunnels` compares the tunnels (bare kernel path, socat, OpenVPN, m6t) in the standard
namespace lab; see bench/README.md.
"""
