"""Console pages: sign-in (password, LDAP, SAML, OIDC), MFA, the user's security page and
sessions, admins' session controls, and tenant identity-provider settings."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import authenticate, logout
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from apps.audit.services import record_event
from apps.core.middleware import client_ip
from apps.core.mixins import get_tenant_or_404, is_htmx

from . import bruteforce, mfa, oidc, saml, selectors, services, sessions
from . import ldap as ldap_signin
from .forms import (
    COMMON_FIELDS,
    KIND_FIELDS,
    CodeForm,
    EmailChangeForm,
    IdentityProviderForm,
    ReauthForm,
    SetPasswordForm,
    SignInForm,
)
from .models import IdentityProvider, ProviderKind
from .signin import complete_sign_in, provider_for_email, record_failure

INVALID = "The email or password is not right, or the account is disabled."


def _safe_next(request, default: str = "/") -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return default


def _start_sso(request, provider: IdentityProvider, next_url: str):
    try:
        if provider.kind == ProviderKind.SAML:
            return redirect(saml.begin_sign_in(request, provider, next_url=next_url))
        return redirect(oidc.begin_sign_in(request, provider, next_url=next_url))
    except (saml.SAMLError, oidc.OIDCError) as exc:
        record_event(action="auth.sign_in_failed", tenant_id=provider.tenant_id, actor=None, result="failure", request=request,
                     metadata={"method": provider.kind, "reason": exc.reason[:200]})
        messages.error(request, str(exc))
        return redirect("accounts:signin")


@never_cache
@csrf_protect
def signin(request, tenant_slug: str | None = None):
    """One form for everyone: the email's domain (or the tenant link) picks the method."""
    next_url = _safe_next(request)
    if request.user.is_authenticated:
        return redirect(next_url)
    tenant_provider = None
    if tenant_slug is not None:
        tenant_provider = IdentityProvider.objects.filter(tenant_id=tenant_slug, enabled=True).first()
        if tenant_provider and tenant_provider.kind in (ProviderKind.SAML, ProviderKind.OIDC) and request.method == "GET":
            return _start_sso(request, tenant_provider, next_url)
    form = SignInForm(data=request.POST or None)
    context = {"form": form, "next": next_url, "tenant_provider": tenant_provider, "expired": request.GET.get("expired")}
    if request.method != "POST" or not form.is_valid():
        return render(request, "accounts/signin.html", context, status=400 if form.errors else 200)

    email, password = form.cleaned_data["email"].strip().lower(), form.cleaned_data["password"]
    provider = provider_for_email(email)
    if provider and provider.kind in (ProviderKind.SAML, ProviderKind.OIDC):
        return _start_sso(request, provider, next_url)
    if bruteforce.is_locked(identifier=email, ip=client_ip(request)):
        record_event(action="auth.sign_in_failed", tenant_id=None, actor=None, result="denied", request=request,
                     metadata={"method": "password", "reason": "locked", "email_domain": email.rsplit("@", 1)[-1]})
        form.add_error(None, bruteforce.LOCKED_MESSAGE)
        return render(request, "accounts/signin.html", context, status=429)
    if not password:
        form.add_error("password", "Enter your password.")
        return render(request, "accounts/signin.html", context, status=400)

    if provider and provider.kind == ProviderKind.LDAP:
        user, groups = ldap_signin.authenticate(request, provider, email=email, password=password)
        if user is not None:
            try:
                user = services.provision_external_user(provider=provider, email=email, groups=groups, user=user, request=request)
            except services.ExternalSignInRefused as exc:
                record_failure(request, identifier=email, method="ldap", reason=exc.reason, tenant_id=provider.tenant_id)
                form.add_error(None, str(exc))
                return render(request, "accounts/signin.html", context, status=403)
            complete_sign_in(request, user, method="ldap", tenant_id=provider.tenant_id)
            return redirect(next_url)
        method, tenant = "ldap", provider.tenant_id
    else:
        user = authenticate(request, email=email, password=password)
        if user is not None:
            complete_sign_in(request, user, method="password")
            return redirect(next_url)
        method, tenant = "password", None
    # A failed authenticate() was audited by the audit app's receiver; LDAP's backend is called
    # directly and fires no signal, so its failure is audited here.
    locked = record_failure(request, identifier=email, method=method, reason="bad credentials", tenant_id=tenant,
                            audit=method == "ldap")
    form.add_error(None, bruteforce.LOCKED_MESSAGE if locked else INVALID)
    return render(request, "accounts/signin.html", context, status=429 if locked else 400)


@require_POST
def signout(request):
    """Local sign-out; a SAML session also goes through the IdP's single logout when it has one."""
    user = request.user if request.user.is_authenticated else None
    slo_url = None
    if user is not None:
        saml_session = request.session.get("saml")
        if saml_session:
            provider = IdentityProvider.objects.filter(pk=saml_session["provider"], enabled=True).first()
            if provider:
                try:
                    slo_url = saml.begin_logout(request, provider, name_id=saml_session["name_id"],
                                                session_index=saml_session.get("session_index"))
                except saml.SAMLError:
                    slo_url = None
    sessions.mark_ended(request.session.session_key, "signed_out")
    logout(request)
    return redirect(slo_url or "accounts:signin")


# --- MFA --------------------------------------------------------------------------------------


def _mfa_identifier(user) -> str:
    return f"mfa:{user.pk}"


@never_cache
@login_required
def mfa_verify(request):
    if request.session.get(sessions.MFA_VERIFIED_AT):
        return redirect(_safe_next(request))
    if not mfa.confirmed_device(request.user):
        return redirect(f"{reverse('accounts:mfa-enrol')}?{urlencode({'next': _safe_next(request)})}")
    form = CodeForm(data=request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        ident = _mfa_identifier(request.user)
        if bruteforce.is_locked(identifier=ident, ip=client_ip(request)):
            form.add_error("code", bruteforce.LOCKED_MESSAGE)
            status = 429
        elif mfa.verify(user=request.user, code=form.cleaned_data["code"], request=request):
            bruteforce.record_success(identifier=ident)
            sessions.mark_mfa_verified(request)
            return redirect(_safe_next(request))
        else:
            locked = bruteforce.record_failure(identifier=ident, ip=client_ip(request))
            form.add_error("code", bruteforce.LOCKED_MESSAGE if locked else "That code is not right or was already used.")
            status = 400
    return render(request, "accounts/mfa_verify.html", {"form": form, "next": _safe_next(request)}, status=status)


@never_cache
@login_required
def mfa_enrol(request):
    """Enrol an authenticator: an MFA change, so it needs a sign-in or re-authentication from
    the last few minutes (the forced enrolment right after sign-in has one)."""
    user = request.user
    if mfa.confirmed_device(user):
        return redirect("accounts:security")
    if (response := _require_reauth(request)) is not None:
        return response
    device = user.totp_device if hasattr(user, "totp_device") else mfa.start_enrolment(user=user)
    form = CodeForm(data=request.POST or None)
    if request.method == "POST" and form.is_valid():
        codes = mfa.confirm_enrolment(user=user, code=form.cleaned_data["code"], request=request)
        if codes:
            sessions.mark_mfa_verified(request)
            return render(request, "accounts/recovery_codes.html", {"codes": codes, "next": _safe_next(request)})
        form.add_error("code", "That code is not right. Check your device's clock and try the next code.")
    uri = mfa.provisioning_uri(device)
    return render(request, "accounts/mfa_enrol.html", {
        "form": form, "qr_svg": mfa.qr_svg(uri), "secret": device.secret, "next": _safe_next(request),
        "required": user.mfa_required(),
    }, status=400 if form.errors else 200)


def _require_reauth(request):
    if not sessions.recently_reauthenticated(request):
        return redirect(f"{reverse('accounts:reauth')}?{urlencode({'next': request.get_full_path()})}")
    return None


@never_cache
@login_required
def reauth(request):
    """Prove presence again (password and, when enrolled, a code) before a sensitive change."""
    user = request.user
    has_device = mfa.confirmed_device(user) is not None
    form = ReauthForm(data=request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        ident = f"reauth:{user.pk}"
        ok = not bruteforce.is_locked(identifier=ident, ip=client_ip(request))
        if ok and user.has_usable_password():
            ok = user.check_password(form.cleaned_data["password"] or "")
        if ok and has_device:
            ok = mfa.verify(user=user, code=form.cleaned_data["code"], request=request) is not None
        if ok and not (user.has_usable_password() or has_device):
            ok = False
        record_event(action="auth.reauth", tenant_id=None, actor=user, resource_type="user", resource_id=str(user.pk),
                     request=request, result="success" if ok else "failure")
        if ok:
            bruteforce.record_success(identifier=ident)
            sessions.mark_reauthenticated(request)
            return redirect(_safe_next(request, reverse("accounts:security")))
        bruteforce.record_failure(identifier=ident, ip=client_ip(request))
        form.add_error(None, "That did not match. Try again.")
        status = 400
    return render(request, "accounts/reauth.html", {
        "form": form, "next": _safe_next(request), "needs_password": user.has_usable_password(), "needs_code": has_device,
    }, status=status)


@never_cache
@login_required
def security(request):
    user = request.user
    return render(request, "accounts/security.html", {
        "device": mfa.confirmed_device(user),
        "recovery_left": mfa.remaining_recovery_codes(user),
        "mfa_required": user.mfa_required(),
        "sessions": sessions.active_sessions(user),
        "current_key": request.session.session_key,
        "email_form": EmailChangeForm(user=user),
        "password_form": SetPasswordForm(user=user),
    })


@require_POST
@login_required
def recovery_codes_regenerate(request):
    if (response := _require_reauth(request)) is not None:
        return response
    if not mfa.confirmed_device(request.user):
        return redirect("accounts:security")
    codes = mfa.regenerate_recovery_codes(user=request.user, request=request)
    return render(request, "accounts/recovery_codes.html", {"codes": codes, "next": reverse("accounts:security")})


@require_POST
@login_required
def mfa_remove(request):
    if (response := _require_reauth(request)) is not None:
        return response
    mfa.remove_totp(user=request.user, request=request)
    if request.user.mfa_required():
        # The session no longer has a second factor: enrol again before anything else.
        request.session.pop(sessions.MFA_VERIFIED_AT, None)
    messages.success(request, "The authenticator was removed.")
    return redirect("accounts:security")


@login_required
def email_change(request):
    if (response := _require_reauth(request)) is not None:
        return response
    form = EmailChangeForm(data=request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        services.change_email(user=request.user, email=form.cleaned_data["email"], request=request)
        messages.success(request, "Your email was changed.")
        return redirect("accounts:security")
    return render(request, "accounts/email_change.html", {"form": form}, status=400 if form.errors else 200)


@login_required
def password_change(request):
    if (response := _require_reauth(request)) is not None:
        return response
    form = SetPasswordForm(data=request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        request.user.set_password(form.cleaned_data["new_password"])
        request.user.save(update_fields=["password"])
        from django.contrib.auth import update_session_auth_hash

        update_session_auth_hash(request, request.user)
        record_event(action="user.password_change", tenant_id=None, actor=request.user, resource_type="user",
                     resource_id=str(request.user.pk), request=request)
        messages.success(request, "Your password was changed.")
        return redirect("accounts:security")
    return render(request, "accounts/password_change.html", {"form": form}, status=400 if form.errors else 200)


@require_POST
@login_required
def sessions_end_others(request):
    count = sessions.end_other_sessions(user=request.user, keep_session_key=request.session.session_key, request=request)
    messages.success(request, f"Signed out {count} other session{'s' if count != 1 else ''}.")
    return redirect("accounts:security")


@require_POST
@login_required
def session_end(request, session_id: int):
    if not sessions.end_session(user=request.user, session_id=session_id, actor=request.user, request=request):
        raise Http404
    return redirect("accounts:security")


# --- Admins: another user's sessions and status ------------------------------------------------


@never_cache
@login_required
def user_sessions(request, user_id: int):
    target = selectors.managed_user(request.user, user_id)
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "end_all":
            count = sessions.end_all_sessions(user=target, actor=request.user, request=request)
            messages.success(request, f"Ended {count} session{'s' if count != 1 else ''} of {target.email}.")
        elif action in ("disable", "enable"):
            if target.pk == request.user.pk:
                raise PermissionDenied("You cannot disable yourself.")
            services.set_user_active(user=target, active=action == "enable", actor=request.user, request=request)
            messages.success(request, f"{target.email} was {action}d.")
        return redirect("accounts:user-sessions", user_id=target.pk)
    return render(request, "accounts/user_sessions.html", {"target": target, "sessions": sessions.active_sessions(target)})


# --- SAML and OIDC endpoints -------------------------------------------------------------------


def _sso_provider_or_404(tenant_id: str, kind: str) -> IdentityProvider:
    provider = IdentityProvider.objects.filter(tenant_id=tenant_id, kind=kind, enabled=True).select_related("tenant").first()
    if provider is None or not provider.tenant.is_active:
        raise Http404
    return provider


def _finish_external(request, provider: IdentityProvider, identity: dict, next_url: str, extra_session: dict | None = None):
    try:
        user = services.provision_external_user(provider=provider, email=identity["email"], groups=identity["groups"], request=request)
    except services.ExternalSignInRefused as exc:
        record_failure(request, identifier=identity.get("email") or "unknown", method=provider.kind, reason=exc.reason,
                       tenant_id=provider.tenant_id)
        return render(request, "accounts/sso_failed.html", {"message": str(exc)}, status=403)
    mfa_done = bool(identity.get("mfa") and provider.trust_idp_mfa)
    complete_sign_in(request, user, method=provider.kind, mfa_verified=mfa_done, tenant_id=provider.tenant_id)
    if extra_session:
        request.session.update(extra_session)
    return redirect(next_url)


def saml_metadata(request, tenant_slug: str):
    tenant_id = tenant_slug  # a public entry point: the slug is only a lookup key
    provider = _sso_provider_or_404(tenant_id, ProviderKind.SAML)
    try:
        xml = saml.metadata_xml(provider)
    except saml.SAMLError:
        raise Http404 from None
    return HttpResponse(xml, content_type="application/samlmetadata+xml")


def saml_login(request, tenant_slug: str):
    tenant_id = tenant_slug  # a public entry point: the slug is only a lookup key
    return _start_sso(request, _sso_provider_or_404(tenant_id, ProviderKind.SAML), _safe_next(request))


@csrf_exempt  # the IdP posts here cross-site; the signed, audience-bound assertion is the proof
@require_POST
@never_cache
def saml_acs(request, tenant_slug: str):
    tenant_id = tenant_slug  # a public entry point: the slug is only a lookup key
    provider = _sso_provider_or_404(tenant_id, ProviderKind.SAML)
    try:
        identity = saml.consume_response(request, provider)
    except saml.SAMLError as exc:
        record_failure(request, identifier=f"saml:{tenant_id}", method="saml", reason=exc.reason[:300], tenant_id=tenant_id)
        return render(request, "accounts/sso_failed.html", {"message": str(exc)}, status=403)
    relay = request.POST.get("RelayState", "")
    next_url = relay if url_has_allowed_host_and_scheme(relay, allowed_hosts={request.get_host()}) and relay.startswith("/") else "/"
    return _finish_external(request, provider, identity, next_url, {"saml": {
        "provider": str(provider.pk), "name_id": identity["name_id"], "session_index": identity["session_index"],
    }})


@csrf_exempt
@never_cache
def saml_sls(request, tenant_slug: str):
    tenant_id = tenant_slug  # a public entry point: the slug is only a lookup key
    provider = _sso_provider_or_404(tenant_id, ProviderKind.SAML)

    def end_local():
        sessions.mark_ended(request.session.session_key, "saml_slo")
        logout(request)

    try:
        url = saml.process_logout(request, provider, delete_session=end_local)
    except saml.SAMLError as exc:
        record_event(action="auth.saml_logout_failed", tenant_id=tenant_id, actor=None, result="failure", request=request,
                     metadata={"reason": exc.reason[:200]})
        return render(request, "accounts/sso_failed.html", {"message": str(exc)}, status=400)
    return redirect(url or "accounts:signin")


def oidc_login(request, tenant_slug: str):
    tenant_id = tenant_slug  # a public entry point: the slug is only a lookup key
    return _start_sso(request, _sso_provider_or_404(tenant_id, ProviderKind.OIDC), _safe_next(request))


@never_cache
def oidc_callback(request, tenant_slug: str):
    tenant_id = tenant_slug  # a public entry point: the slug is only a lookup key
    provider = _sso_provider_or_404(tenant_id, ProviderKind.OIDC)
    try:
        if request.GET.get("error"):
            raise oidc.OIDCError(f"provider returned error {request.GET['error'][:50]}")
        flow = oidc.take_flow(request, request.GET.get("state", ""))
        if flow["tenant"] != tenant_id:
            raise oidc.OIDCError("state belongs to another tenant")
        identity = oidc.finish_sign_in(request, provider, flow, code=request.GET.get("code", ""))
    except oidc.OIDCError as exc:
        record_failure(request, identifier=f"oidc:{tenant_id}", method="oidc", reason=exc.reason[:300], tenant_id=tenant_id)
        return render(request, "accounts/sso_failed.html", {"message": str(exc)}, status=403)
    return _finish_external(request, provider, identity, flow.get("next") or "/")


# --- Tenant identity-provider settings --------------------------------------------------------


@login_required
def provider_list(request, tenant_id: str):
    tenant = get_tenant_or_404(request.user, tenant_id, "manage")
    return render(request, "accounts/provider_list.html", {
        "tenant": tenant, "providers": selectors.identity_providers(request.user).filter(tenant=tenant),
        "signin_link": request.build_absolute_uri(reverse("accounts:signin-tenant", args=[tenant.pk])),
    })


def _provider_fields(form) -> dict:
    return {name: form.cleaned_data[name] for name in form.Meta.fields if name in form.cleaned_data}


@login_required
def provider_edit(request, tenant_id: str, provider_id=None):
    tenant = get_tenant_or_404(request.user, tenant_id, "manage")
    provider = None
    if provider_id is not None:
        provider = get_object_or_404(selectors.identity_providers(request.user).filter(tenant=tenant), pk=provider_id)
    form = IdentityProviderForm(data=request.POST or None, instance=provider, tenant=tenant,
                                initial={"kind": request.GET.get("kind", "saml")} if provider is None else None)
    if request.method == "POST" and form.is_valid():
        fields = _provider_fields(form)
        if provider is None:
            provider = services.create_identity_provider(tenant=tenant, actor=request.user, request=request, **fields)
        else:
            fields.pop("kind", None)
            services.update_identity_provider(provider=provider, actor=request.user, request=request, **fields)
        messages.success(request, "Saved.")
        return redirect("accounts:provider-list", tenant_id=tenant.pk)
    return render(request, "accounts/provider_form.html", {
        "tenant": tenant, "form": form, "provider": provider, "common_fields": COMMON_FIELDS, "kind_fields": KIND_FIELDS,
        "sp": saml.sp_urls(tenant.pk), "oidc_redirect": oidc.redirect_uri(tenant.pk),
    }, status=400 if form.errors else 200)


@require_POST
@login_required
def provider_test(request, tenant_id: str, provider_id):
    tenant = get_tenant_or_404(request.user, tenant_id, "manage")
    provider = get_object_or_404(selectors.identity_providers(request.user).filter(tenant=tenant), pk=provider_id)
    problems = services.test_identity_provider(provider=provider, actor=request.user, request=request)
    context = {"provider": provider, "problems": problems}
    if is_htmx(request):
        return render(request, "accounts/_provider_test.html", context)
    return render(request, "accounts/provider_test.html", {**context, "tenant": tenant})


@require_POST
@login_required
def provider_delete(request, tenant_id: str, provider_id):
    tenant = get_tenant_or_404(request.user, tenant_id, "manage")
    provider = get_object_or_404(selectors.identity_providers(request.user).filter(tenant=tenant), pk=provider_id)
    services.delete_identity_provider(provider=provider, actor=request.user, request=request)
    messages.success(request, "Deleted.")
    return redirect("accounts:provider-list", tenant_id=tenant.pk)


