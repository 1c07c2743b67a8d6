"""LDAP sign-in per tenant with django-auth-ldap: the tenant's directory, bind, user search,
group search and group-to-role mapping, configured from its IdentityProvider at sign-in time."""

from __future__ import annotations

import hashlib
from pathlib import Path

import ldap
from django.conf import settings
from django_auth_ldap.backend import LDAPBackend, LDAPSettings
from django_auth_ldap.config import GroupOfNamesType, LDAPSearch

from .models import IdentityProvider


class TenantLDAPBackend(LDAPBackend):
    """One backend object per sign-in, carrying that tenant's directory settings. It is not in
    AUTHENTICATION_BACKENDS: the sign-in view calls it directly for users of an LDAP tenant."""

    def __init__(self, provider: IdentityProvider):
        super().__init__()
        self.provider = provider
        config = LDAPSettings(prefix="SWITCHYARD_TENANT_LDAP_UNUSED_")
        config.SERVER_URI = provider.ldap_server_uri
        config.START_TLS = provider.ldap_start_tls
        config.BIND_DN = provider.ldap_bind_dn
        config.BIND_PASSWORD = provider.ldap_bind_password or ""
        config.USER_SEARCH = LDAPSearch(provider.ldap_user_search_base, ldap.SCOPE_SUBTREE, provider.ldap_user_filter or "(mail=%(user)s)")
        config.USER_ATTR_MAP = {"name": "cn"}
        config.ALWAYS_UPDATE_USER = True
        config.NO_NEW_USERS = not provider.jit_create_users
        config.CACHE_TIMEOUT = 0  # group membership is read fresh at every sign-in
        config.CONNECTION_OPTIONS = connection_options(provider)
        if provider.ldap_group_search_base:
            config.GROUP_SEARCH = LDAPSearch(provider.ldap_group_search_base, ldap.SCOPE_SUBTREE,
                                             provider.ldap_group_filter or "(objectClass=groupOfNames)")
            config.GROUP_TYPE = GroupOfNamesType(name_attr="cn")
        self.settings = config

    def ldap_to_django_username(self, username):
        return username.strip().lower()


def _ca_file(pem: str) -> str:
    """libldap reads CAs from a file: keep one per distinct PEM under the data directory."""
    directory = Path(settings.SWITCHYARD_DATA_DIR) / "ldap-ca"
    path = directory / (hashlib.sha256(pem.encode()).hexdigest()[:32] + ".pem")
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(pem.strip() + "\n")
        tmp.replace(path)
    return str(path)


def connection_options(provider: IdentityProvider) -> dict:
    """Timeouts always; with StartTLS or ldaps://, a verified certificate (the provider's CA when
    given). OPT_X_TLS_NEWCTX goes last: it applies the TLS options set before it."""
    options = {
        ldap.OPT_NETWORK_TIMEOUT: settings.LDAP_TIMEOUT_SECONDS,
        ldap.OPT_TIMEOUT: settings.LDAP_TIMEOUT_SECONDS,
        ldap.OPT_REFERRALS: 0,
    }
    if provider.ldap_start_tls or provider.ldap_server_uri.startswith("ldaps://"):
        options[ldap.OPT_X_TLS_REQUIRE_CERT] = ldap.OPT_X_TLS_DEMAND
        if provider.ldap_ca_cert.strip():
            options[ldap.OPT_X_TLS_CACERTFILE] = _ca_file(provider.ldap_ca_cert)
        options[ldap.OPT_X_TLS_NEWCTX] = 0
    return options


def authenticate(request, provider: IdentityProvider, *, email: str, password: str):
    """(user, groups) when the directory accepts the password, else (None, [])."""
    backend = TenantLDAPBackend(provider)
    user = backend.authenticate(request, username=email.strip().lower(), password=password)
    if user is None:
        return None, []
    groups = sorted(user.ldap_user.group_names) if provider.ldap_group_search_base else []
    return user, groups


def test_connection(provider: IdentityProvider) -> list[str]:
    """Bind with the service account and run the user search base as a sanity check."""
    if not provider.ldap_server_uri:
        return ["The server URI is required."]
    problems = []
    conn = ldap.initialize(provider.ldap_server_uri)
    try:
        for option, value in connection_options(provider).items():
            conn.set_option(option, value)
        if provider.ldap_start_tls:
            conn.start_tls_s()
        conn.simple_bind_s(provider.ldap_bind_dn or "", provider.ldap_bind_password or "")
        if provider.ldap_user_search_base:
            conn.search_s(provider.ldap_user_search_base, ldap.SCOPE_BASE, "(objectClass=*)", ["dn"])
        if provider.ldap_group_search_base:
            conn.search_s(provider.ldap_group_search_base, ldap.SCOPE_BASE, "(objectClass=*)", ["dn"])
    except ldap.INVALID_CREDENTIALS:
        problems.append("The bind DN or password was refused.")
    except ldap.NO_SUCH_OBJECT:
        problems.append("A search base does not exist in the directory.")
    except ldap.SERVER_DOWN:
        problems.append("The server could not be reached.")
    except ldap.CONNECT_ERROR:
        problems.append("The TLS connection failed: check the CA certificate and the server's name.")
    except ldap.LDAPError as exc:
        problems.append(f"The directory answered with an error: {exc.__class__.__name__}.")
    finally:
        try:
            conn.unbind_s()
        except ldap.LDAPError:
            pass
    return problems
