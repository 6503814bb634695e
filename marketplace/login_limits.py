"""Password guessing, slowed down: the token endpoint and the login page share these limits.

Two limits, both counted in the default cache (Redis when CACHE_URL is set, so every web
process sees the same counts):
- attempts per client address (``login`` rate): a DRF throttle, so one address cannot try
  more than a few passwords a minute whatever the usernames;
- failures per username from any address: after ``LOGIN_MAX_FAILURES`` wrong passwords within
  ``LOGIN_LOCKOUT_SECONDS``, the username is locked for the rest of that window. A correct
  password resets the count. (Anyone can lock a username this way for a quarter of an hour;
  that is the usual price of a lockout, and the address limit makes it slow to spread.)
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import SimpleRateThrottle


class LoginRateThrottle(SimpleRateThrottle):
    """Login attempts per client address (REMOTE_ADDR, or X-Forwarded-For per NUM_PROXIES)."""

    scope = "login"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


def _failures_key(username: str) -> str:
    digest = hashlib.sha256(username.strip().casefold().encode("utf-8", "surrogatepass")).hexdigest()
    return f"login-failures:{digest}"


def _max_failures() -> int:
    return getattr(settings, "LOGIN_MAX_FAILURES", 10)


def lockout_seconds() -> int:
    return getattr(settings, "LOGIN_LOCKOUT_SECONDS", 900)


def is_locked(username: str) -> bool:
    """True when ``username`` has had too many wrong passwords lately."""
    return bool(username) and cache.get(_failures_key(username), 0) >= _max_failures()


def record_failure(username: str) -> None:
    """Count one wrong password for ``username`` (the window starts at the first failure)."""
    if not username:
        return
    key = _failures_key(username)
    if cache.add(key, 1, timeout=lockout_seconds()):
        return
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=lockout_seconds())


def record_success(username: str) -> None:
    cache.delete(_failures_key(username))


def address_wait(request) -> float | None:
    """Seconds the client must wait before another attempt, or None (counts this attempt)."""
    throttle = LoginRateThrottle()
    if throttle.allow_request(request, None):
        return None
    return throttle.wait() or 1.0
