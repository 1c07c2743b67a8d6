"""Writes of the accounts app: identity providers, external users and their roles, user status."""

from __future__ import annotations

from django.apps import apps
from django.db import transaction

from apps.audit.services import record_event

from .models import IdentityProvider, User
from .signin import email_domain

# Fields whose values never go into audit metadata.
_SECRET_FIELDS = {"oidc_client_secret", "ldap_bind_password"}


class ExternalSignInRefused(Exception):
    """The IdP vouched for the user but Switchyard's rules refuse them (domain, role, disabled)."""

    def __init__(self, reason: str):
        super().__init__("Your account is not allowed to sign in here. Ask your administrator.")
        self.reason = reason


def sync_membership(*, tenant_id: str, user, role: str) -> None:
    """Set the user's role in the tenant to what the IdP's groups map to."""
    membership_model = apps.get_model("tenants", "Membership")
    membership_model.objects.update_or_create(tenant_id=tenant_id, user=user, defaults={"role": role})
    user.forget_tenant_roles()


def remove_membership(*, tenant_id: str, user) -> None:
    apps.get_model("tenants", "Membership").objects.filter(tenant_id=tenant_id, user=user).delete()
    user.forget_tenant_roles()


def provision_external_user(*, provider: IdentityProvider, email: str, groups: list[str], user=None, request=None) -> User:
    """The user an IdP vouched for, created just in time if allowed, with the role their groups
    map to in the provider's tenant. Refuses emails outside the provider's domains."""
    email = (email or "").strip().lower()
    if "@" not in email:
        raise ExternalSignInRefused("no usable email in the assertion")
    if provider.email_domains and email_domain(email) not in provider.email_domains:
        raise ExternalSignInRefused("email domain not served by this provider")
    role = provider.role_for_groups(groups)
    with transaction.atomic():
        if user is None:
            user = User.objects.filter(email__iexact=email).first()
        if user is None:
            if not provider.jit_create_users:
                raise ExternalSignInRefused("unknown user and just-in-time creation is off")
            user = User.objects.create_user(email, None, name=email.split("@")[0])
            record_event(action="user.create", tenant_id=provider.tenant_id, actor=None, resource_type="user",
                         resource_id=str(user.pk), request=request, metadata={"via": provider.kind, "jit": True})
        if not user.is_active:
            raise ExternalSignInRefused("user is disabled")
        if user.is_platform_admin:
            # A tenant's IdP never vouches for a platform admin: they sign in locally.
            raise ExternalSignInRefused("platform admins sign in with a local account")
        if role is None:
            remove_membership(tenant_id=provider.tenant_id, user=user)
        else:
            sync_membership(tenant_id=provider.tenant_id, user=user, role=role)
    if role is None:
        # Raised after the commit: the IdP says the user lost their groups, so the role goes.
        raise ExternalSignInRefused("no group maps to a role")
    return user


def _audit_fields(values: dict) -> dict:
    return {k: (str(v) if not isinstance(v, (bool, int, list, dict)) else v)
            for k, v in values.items() if k not in _SECRET_FIELDS}


def create_identity_provider(*, tenant, actor, request=None, **fields) -> IdentityProvider:
    with transaction.atomic():
        provider = IdentityProvider(tenant=tenant, **fields)
        provider.full_clean()
        provider.save()
        record_event(action="identity_provider.create", tenant_id=tenant.pk, actor=actor, resource_type="identity_provider",
                     resource_id=str(provider.pk), request=request, metadata=_audit_fields({"kind": provider.kind, "name": provider.name}))
    return provider


def update_identity_provider(*, provider: IdentityProvider, actor, request=None, **fields) -> IdentityProvider:
    with transaction.atomic():
        changed = []
        for name, value in fields.items():
            if name in _SECRET_FIELDS and value in (None, ""):
                continue  # a blank secret field keeps the stored secret
            if getattr(provider, name) != value:
                setattr(provider, name, value)
                changed.append(name)
        provider.full_clean()
        provider.save()
        record_event(action="identity_provider.update", tenant_id=provider.tenant_id, actor=actor,
                     resource_type="identity_provider", resource_id=str(provider.pk), request=request,
                     metadata={"changed": sorted(changed)})
    return provider


def delete_identity_provider(*, provider: IdentityProvider, actor, request=None) -> None:
    with transaction.atomic():
        record_event(action="identity_provider.delete", tenant_id=provider.tenant_id, actor=actor,
                     resource_type="identity_provider", resource_id=str(provider.pk), request=request)
        provider.delete()


def test_identity_provider(*, provider: IdentityProvider, actor, request=None) -> list[str]:
    from . import ldap, oidc, saml

    module = {"saml": saml, "oidc": oidc, "ldap": ldap}[provider.kind]
    problems = module.test_connection(provider)
    record_event(action="identity_provider.test", tenant_id=provider.tenant_id, actor=actor,
                 resource_type="identity_provider", resource_id=str(provider.pk), request=request,
                 result="success" if not problems else "failure", metadata={"problems": len(problems)})
    return problems


def set_user_active(*, user: User, active: bool, actor, request=None) -> None:
    """Disable or re-enable a user; disabling ends every session and revokes every token (the
    post_save receiver in signals.py does that, so the Django admin's switch does it too)."""
    with transaction.atomic():
        user.is_active = active
        user.save(update_fields=["is_active"])
        record_event(action="user.enable" if active else "user.disable", tenant_id=None, actor=actor,
                     resource_type="user", resource_id=str(user.pk), request=request)


def change_email(*, user: User, email: str, request=None) -> None:
    with transaction.atomic():
        old_domain = email_domain(user.email)
        user.email = email.strip().lower()
        user.save(update_fields=["email"])
        record_event(action="user.email_change", tenant_id=None, actor=user, resource_type="user", resource_id=str(user.pk),
                     request=request, metadata={"old_domain": old_domain, "new_domain": email_domain(user.email)})


def purge_expired_credentials(*, keep_days: int = 30) -> dict[str, int]:
    """Remove access and refresh tokens expired or revoked more than `keep_days` ago (reuse
    detection needs a used refresh token only until its family expires) and ended session rows."""
    from datetime import timedelta

    from django.contrib.sessions.models import Session
    from django.db.models import Q
    from django.utils import timezone

    from .models import AccessToken, RefreshToken, UserSession

    cutoff = timezone.now() - timedelta(days=keep_days)
    old = Q(expires_at__lt=cutoff) | Q(revoked_at__lt=cutoff)
    with transaction.atomic():
        access, _ = AccessToken.objects.filter(old).delete()
        refresh, _ = RefreshToken.objects.filter(old).delete()
        ended, _ = UserSession.objects.filter(ended_at__lt=cutoff).delete()
        expired_sessions, _ = Session.objects.filter(expire_date__lt=timezone.now()).delete()
    return {"access_tokens": access, "refresh_tokens": refresh, "session_rows": ended, "django_sessions": expired_sessions}
