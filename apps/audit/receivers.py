"""Sign-in, sign-out and failed sign-in, recorded from Django's auth signals for every sign-in method."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from .models import Result
from .services import Actor, record_event


def _tenants_of(user) -> list[str | None]:
    """A user's sign-in goes to each tenant they belong to (its auditors see it), else the platform chain."""
    roles = user.tenant_roles() if hasattr(user, "tenant_roles") else {}
    return sorted(roles) or [None]


@receiver(user_logged_in, dispatch_uid="audit-sign-in")
def record_sign_in(sender, request, user, **kwargs):
    backend = getattr(user, "backend", "") or ""
    for tenant_id in _tenants_of(user):
        record_event(
            action="auth.sign_in", tenant_id=tenant_id, actor=user, resource_type="user", resource_id=str(user.pk),
            request=request, metadata={"backend": backend.rsplit(".", 1)[-1]},
        )


@receiver(user_logged_out, dispatch_uid="audit-sign-out")
def record_sign_out(sender, request, user, **kwargs):
    if user is None:
        return
    for tenant_id in _tenants_of(user):
        record_event(action="auth.sign_out", tenant_id=tenant_id, actor=user, resource_type="user",
                     resource_id=str(user.pk), request=request)


@receiver(user_login_failed, dispatch_uid="audit-sign-in-failed")
def record_sign_in_failure(sender, credentials, request=None, **kwargs):
    # Django has already masked the password in `credentials`; only the identifier is kept.
    identifier = str(credentials.get("email") or credentials.get("username") or "")[:254].lower()
    user = get_user_model().objects.filter(email__iexact=identifier).first() if identifier else None
    tenants = _tenants_of(user) if user is not None else [None]
    actor = Actor("anonymous", "", identifier) if user is None else Actor("user", str(user.pk), user.email, user.pk)
    for tenant_id in tenants:
        record_event(
            action="auth.sign_in_failed", tenant_id=tenant_id, actor=actor, resource_type="user",
            resource_id=str(user.pk) if user else "", result=Result.FAILURE, request=request,
            metadata={"identifier": identifier, "known_user": user is not None},
        )
