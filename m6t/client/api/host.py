"""The machine a client runs on, as the platform names it.

The tray follows its OS's conventions (where a start-at-login entry goes, which service manager starts the
helper) but must not test the OS itself, nor reach below this API: the platform answers, once, here.
"""

from m6t.platform.family import OsFamily, os_family

__all__ = ["OsFamily", "os_family"]
