"""Console sessions: timestamps that drive idle and absolute timeouts, the per-user session
list, and ending sessions (one, all others, or all of a user's)."""

from __future__ import annotations

import time

from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone

from apps.audit.services import record_event
from apps.core.middleware import client_ip

from .models import UserSession

SIGNED_IN_AT = "signed_in_at"
LAST_ACTIVITY = "last_activity"
MFA_VERIFIED_AT = "mfa_verified_at"
REAUTH_AT = "reauth_at"
# Recording activity rewrites the session row; once a minute is precise enough for timeouts.
_TOUCH_EVERY = 60


def start(request, user, *, method: str, mfa_verified: bool) -> None:
    """Stamp a just-created session and list it for its owner."""
    now = time.time()
    request.session[SIGNED_IN_AT] = now
    request.session[LAST_ACTIVITY] = now
    request.session["signin_method"] = method
    # Signing in proves presence as much as re-authenticating does; until MFA passes, the MFA
    # middleware keeps such a session away from every sensitive page anyway.
    request.session[REAUTH_AT] = now
    if mfa_verified:
        request.session[MFA_VERIFIED_AT] = now
    else:
        request.session.pop(MFA_VERIFIED_AT, None)
    request.session.save()
    UserSession.objects.update_or_create(
        session_key=request.session.session_key,
        defaults={
            "user": user,
            "method": method,
            "ip": client_ip(request),
            "user_agent": request.META.get("HTTP_USER_AGENT", "")[:300],
        },
    )


def mark_mfa_verified(request) -> None:
    """MFA passed: a new session key (so a key seen before MFA is worthless) and the flag."""
    old_key = request.session.session_key
    request.session.cycle_key()
    now = time.time()
    request.session[MFA_VERIFIED_AT] = now
    request.session[REAUTH_AT] = now
    request.session.save()
    UserSession.objects.filter(session_key=old_key).update(session_key=request.session.session_key)


def mark_reauthenticated(request) -> None:
    request.session[REAUTH_AT] = time.time()


def recently_reauthenticated(request) -> bool:
    stamp = request.session.get(REAUTH_AT)
    return stamp is not None and time.time() - stamp < settings.SWITCHYARD_REAUTH_SECONDS


def expired_reason(request) -> str | None:
    """'idle' or 'absolute' when the session has outlived a limit, else None (and stamps it)."""
    session = request.session
    now = time.time()
    signed_in_at = session.get(SIGNED_IN_AT)
    last = session.get(LAST_ACTIVITY)
    if signed_in_at is None:
        # Sessions made outside the sign-in views (fixtures, the Django admin) start now.
        session[SIGNED_IN_AT] = signed_in_at = now
    if last is not None and now - last > settings.SESSION_IDLE_SECONDS:
        return "idle"
    if now - signed_in_at > settings.SESSION_COOKIE_AGE:
        return "absolute"
    if last is None or now - last > _TOUCH_EVERY:
        session[LAST_ACTIVITY] = now
        UserSession.objects.filter(session_key=session.session_key).update(last_seen_at=timezone.now())
    return None


def mark_ended(session_key: str | None, reason: str) -> None:
    if session_key:
        UserSession.objects.filter(session_key=session_key, ended_at__isnull=True).update(
            ended_at=timezone.now(), end_reason=reason
        )


def active_sessions(user):
    """The user's sessions that still exist and have not been ended."""
    live_keys = Session.objects.filter(expire_date__gt=timezone.now()).values("session_key")
    return UserSession.objects.filter(user=user, ended_at__isnull=True, session_key__in=live_keys)


def _end(rows, reason: str) -> int:
    keys = list(rows.values_list("session_key", flat=True))
    for session_key in keys:
        SessionStore(session_key=session_key).delete()
    UserSession.objects.filter(session_key__in=keys).update(ended_at=timezone.now(), end_reason=reason)
    return len(keys)


def end_session(*, user, session_id: int, actor, request=None) -> bool:
    with transaction.atomic():
        count = _end(UserSession.objects.filter(user=user, pk=session_id, ended_at__isnull=True), "signed_out_remotely")
        if count:
            record_event(action="session.end", tenant_id=None, actor=actor, resource_type="user",
                         resource_id=str(user.pk), request=request, metadata={"sessions": count})
    return bool(count)


def end_other_sessions(*, user, keep_session_key: str, request=None) -> int:
    with transaction.atomic():
        rows = UserSession.objects.filter(user=user, ended_at__isnull=True).exclude(session_key=keep_session_key)
        count = _end(rows, "signed_out_by_user")
        record_event(action="session.end_others", tenant_id=None, actor=user, resource_type="user",
                     resource_id=str(user.pk), request=request, metadata={"sessions": count})
    return count


def end_all_sessions(*, user, actor=None, reason: str = "ended_by_admin", request=None) -> int:
    """End every listed session of the user."""
    with transaction.atomic():
        # Sessions made outside the sign-in views are not listed, but a disabled user's session
        # never loads: the backends refuse inactive users on every request.
        count = _end(UserSession.objects.filter(user=user, ended_at__isnull=True), reason)
        record_event(action="session.end_all", tenant_id=None, actor=actor, resource_type="user",
                     resource_id=str(user.pk), request=request, metadata={"sessions": count, "reason": reason})
    return count
