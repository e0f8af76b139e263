"""The Windows backend (:class:`m6t.platform.windows.backend.WindowsBackend`): Wintun + the IP Helper API.

Every OS call goes through :class:`m6t.platform.windows.system.WinApi`, so the backend runs (and is
tested) on any OS against fakes of the DLLs; only :func:`m6t.platform.windows.system.native_api` needs
Windows.  Nothing is imported here, so that importing one module does not pull in the others.
"""
