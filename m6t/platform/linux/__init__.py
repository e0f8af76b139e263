"""The Linux backend (:class:`m6t.platform.linux.backend.LinuxBackend`) and its gateway-facing pieces.

The gateway takes the backend for its TUN (a :class:`~m6t.platform.linux.tun.LinuxTun`, which also hands out
the coalescers that merge for it) and its routes, and uses :mod:`udp` directly for its listening sockets
(``open_udp_listener``, ``recv_batch``, ``send_batch``) and :mod:`netlink` for its sysctls.
Nothing is imported here, so that importing one module does not pull in pyroute2 or psutil needlessly.
"""
