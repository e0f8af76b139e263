"""The macOS backend (:class:`m6t.platform.darwin.backend.DarwinBackend`).

``utun`` kernel-control sockets carry the tunnel, ``ioctl`` on an AF_INET6 datagram socket configures it
(:mod:`.ifconfig_ioctl`), the PF_ROUTE routing socket installs routes and watches IPv4 connectivity
(:mod:`.routing`, :mod:`.monitor`).  No ``ifconfig``/``route`` process is ever spawned.

Every raw call goes through one injectable :class:`.syscalls.Syscalls` object, so that the whole backend
runs (and is tested) on any OS against a fake kernel that decodes the structures it is sent.  For the same
reason nothing here asserts ``sys.platform == "darwin"``, and nothing is imported in this ``__init__``.
"""
