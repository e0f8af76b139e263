"""The Linux backend (:class:`m6t.platform.linux.backend.LinuxBackend`) and its gateway-facing pieces.

The gateway uses the modules directly, without the ``Backend`` ABC: :func:`tun.open_tun`,
:mod:`udp` (``open_udp_listener``, ``recv_batch``, ``send_batch``) and :mod:`netlink`.
Nothing is imported here, so that importing one module does not pull in pyroute2 or psutil needlessly.
"""
