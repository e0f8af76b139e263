"""Enrolled mode's keys at run time: the verifier the core checks with, loaded from the key file and reloaded.

A reload (SIGHUP) swaps the verifier's keys in place: states, the replay cache and the counters stay.  A
key file that fails to load is reported and changes nothing, so a typo never locks every mobile node out.
"""

from __future__ import annotations

import logging
import time

from m6t.configfile import ConfigError
from m6t.gateway.config import AccessMode, AccessSection
from m6t.gateway.keys import KeyFile, load_key_file
from m6t.protocol.access import AccessVerifier

log = logging.getLogger(__name__)


def wall_offset() -> float:
    """What turns the core's monotonic clock into the wall clock access headers are stamped with."""
    return time.time() - time.monotonic()


def open_access(section: AccessSection) -> AccessVerifier | None:
    """The verifier of an enrolled gateway (keys loaded), None for an open one; :class:`ConfigError` if the
    key file cannot be used."""
    if section.mode is not AccessMode.ENROLLED:
        return None
    keys = load_key_file(section.key_file)
    _announce(section, keys)
    return AccessVerifier(
        keys.keys(), window_s=section.window_s, replay_capacity=section.replay_cache, wall_offset=wall_offset()
    )


def reload_keys(verifier: AccessVerifier | None, section: AccessSection) -> bool:
    """Re-read the key file into ``verifier``; False (and the old keys kept) if it cannot be used."""
    if verifier is None:
        log.info('reload: the gateway is open ([access] mode = "open"): no keys to read')
        return True
    try:
        keys = load_key_file(section.key_file)
    except ConfigError as exc:
        log.error("reload refused, the previous %d key(s) stay in force:\n%s", verifier.key_count, exc)
        return False
    verifier.set_keys(keys.keys())
    # The wall clock may have been stepped since the start: the next headers are judged by the new one.
    verifier.wall_offset = wall_offset()
    _announce(section, keys, reloaded=True)
    return True


def _announce(section: AccessSection, keys: KeyFile, *, reloaded: bool = False) -> None:
    names = len(keys.entries)
    what = "reloaded" if reloaded else "enrolled mode"
    log.info("%s: %d key(s) for %d mobile node(s) from %s", what, len(keys), names, section.key_file)
    if not len(keys):
        log.warning("%s holds no key: no mobile node can connect (m6t-gateway keys add NAME)", section.key_file)
