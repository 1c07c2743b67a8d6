"""LDAP sign-in against a real slapd started by the tests: password check, group-to-role
mapping, and a user removed from a group losing the role at the next sign-in."""

from __future__ import annotations

import tempfile

import pytest
from django.test import Client
from slapdtest import SlapdObject

from apps.accounts import services
from apps.accounts.models import User
from apps.audit.models import AuditEvent
from apps.core.roles import Role

pytestmark = pytest.mark.django_db

BIND_DN_PASSWORD = "svc-bind-password"
ALICE_PASSWORD = "alice-ldap-password"


class Slapd(SlapdObject):
    TMPDIR = tempfile.gettempdir()
    openldap_schema_files = ("core.ldif", "cosine.ldif", "inetorgperson.ldif")


@pytest.fixture(scope="module")
def slapd():
    server = Slapd()
    server.start()
    s = server.suffix
    server.ldapadd(f"""dn: {s}
objectClass: dcObject
objectClass: organization
dc: slapd-test
o: Test

dn: ou=people,{s}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{s}
objectClass: organizationalUnit
ou: groups

dn: cn=svc,{s}
objectClass: inetOrgPerson
cn: svc
sn: svc
userPassword: {BIND_DN_PASSWORD}

dn: uid=alice,ou=people,{s}
objectClass: inetOrgPerson
uid: alice
cn: Alice Ldap
sn: Ldap
mail: alice@ldap.test
userPassword: {ALICE_PASSWORD}

dn: uid=bob,ou=people,{s}
objectClass: inetOrgPerson
uid: bob
cn: Bob Ldap
sn: Ldap
mail: bob@ldap.test
userPassword: bob-ldap-password

dn: cn=llm-admins,ou=groups,{s}
objectClass: groupOfNames
cn: llm-admins
member: cn=svc,{s}
member: uid=alice,ou=people,{s}

dn: cn=llm-users,ou=groups,{s}
objectClass: groupOfNames
cn: llm-users
member: uid=alice,ou=people,{s}
member: uid=bob,ou=people,{s}
""")
    yield server
    server.stop()


@pytest.fixture
def provider(personas, slapd, redis_client):
    return services.create_identity_provider(
        tenant=personas.tenant_a, actor=personas.a_admin, kind="ldap", name="Corp LDAP", email_domains=["ldap.test"],
        ldap_server_uri=slapd.ldap_uri, ldap_bind_dn=f"cn=svc,{slapd.suffix}", ldap_bind_password=BIND_DN_PASSWORD,
        ldap_user_search_base=f"ou=people,{slapd.suffix}", ldap_group_search_base=f"ou=groups,{slapd.suffix}",
        role_mapping={"llm-admins": Role.TENANT_ADMIN, "llm-users": Role.VIEWER}, default_role="",
    )


def _sign_in(email, password):
    client = Client()
    return client, client.post("/accounts/signin/", {"email": email, "password": password})


def test_a_directory_user_signs_in_with_their_ldap_password(provider):
    client, response = _sign_in("bob@ldap.test", "bob-ldap-password")
    assert response.status_code == 302
    bob = User.objects.get(email="bob@ldap.test")
    assert bob.name == "Bob Ldap" and not bob.has_usable_password()
    assert bob.tenant_roles() == {"tenant-a": Role.VIEWER}
    assert client.get("/tenants/").status_code == 200
    assert AuditEvent.objects.filter(action="auth.sign_in", metadata__backend="LDAPSignInBackend").exists()


def test_a_wrong_ldap_password_is_refused(provider):
    client, response = _sign_in("bob@ldap.test", "not-bobs-password")
    assert response.status_code == 400
    assert "_auth_user_id" not in client.session
    assert AuditEvent.objects.filter(action="auth.sign_in_failed", result="failure", metadata__method="ldap").exists()


def test_an_unknown_directory_user_is_refused_like_a_wrong_password(provider):
    _, unknown = _sign_in("carol@ldap.test", "whatever-password")
    _, wrong = _sign_in("bob@ldap.test", "whatever-password")
    assert unknown.status_code == wrong.status_code == 400


def test_group_membership_maps_to_the_strongest_role(provider):
    client, response = _sign_in("alice@ldap.test", ALICE_PASSWORD)
    assert response.status_code == 302
    assert User.objects.get(email="alice@ldap.test").tenant_roles() == {"tenant-a": Role.TENANT_ADMIN}
    # A tenant admin must pass MFA before the console.
    assert client.get("/tenants/")["Location"].startswith("/accounts/mfa/enrol/")


def test_a_user_removed_from_a_group_loses_the_role_at_next_sign_in(provider, slapd):
    _sign_in("alice@ldap.test", ALICE_PASSWORD)
    assert User.objects.get(email="alice@ldap.test").tenant_roles() == {"tenant-a": Role.TENANT_ADMIN}
    slapd.ldapmodify(f"""dn: cn=llm-admins,ou=groups,{slapd.suffix}
changetype: modify
delete: member
member: uid=alice,ou=people,{slapd.suffix}
""")
    try:
        _, response = _sign_in("alice@ldap.test", ALICE_PASSWORD)
        assert response.status_code == 302
        assert User.objects.get(email="alice@ldap.test").tenant_roles() == {"tenant-a": Role.VIEWER}
    finally:
        slapd.ldapmodify(f"""dn: cn=llm-admins,ou=groups,{slapd.suffix}
changetype: modify
add: member
member: uid=alice,ou=people,{slapd.suffix}
""")


def test_the_bind_password_is_encrypted_at_rest(provider):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT ldap_bind_password FROM accounts_identityprovider WHERE id = %s", [provider.pk])
        (stored,) = cursor.fetchone()
    assert BIND_DN_PASSWORD not in stored


def test_test_connection_binds_and_reports_a_wrong_bind_password(provider, personas):
    assert services.test_identity_provider(provider=provider, actor=personas.a_admin) == []
    services.update_identity_provider(provider=provider, actor=personas.a_admin, ldap_bind_password="wrong")
    assert services.test_identity_provider(provider=provider, actor=personas.a_admin) == ["The bind DN or password was refused."]


def test_an_unreachable_server_is_reported_not_raised(provider, personas):
    services.update_identity_provider(provider=provider, actor=personas.a_admin, ldap_server_uri="ldap://127.0.0.1:1")
    assert services.test_identity_provider(provider=provider, actor=personas.a_admin) == ["The server could not be reached."]
    _, response = _sign_in("bob@ldap.test", "bob-ldap-password")
    assert response.status_code == 400


def _tls_provider(provider, slapd, ca_pem):
    # The test server's certificate names IP 127.0.0.1 (libldap rewrites "localhost" to the
    # machine's own name, which the certificate does not carry).
    return services.update_identity_provider(provider=provider, actor=None, ldap_server_uri=slapd.ldap_uri,
                                             ldap_start_tls=True, ldap_ca_cert=ca_pem)


def test_start_tls_with_the_directorys_ca_signs_in(provider, slapd):
    from pathlib import Path

    _tls_provider(provider, slapd, Path(slapd.cafile).read_text())
    assert services.test_identity_provider(provider=provider, actor=None) == []
    _, response = _sign_in("bob@ldap.test", "bob-ldap-password")
    assert response.status_code == 302


def test_start_tls_refuses_a_directory_certificate_it_cannot_verify(provider, slapd):
    from tests.accounts.saml_idp import make_key_and_cert

    _tls_provider(provider, slapd, make_key_and_cert("unrelated-ca")[1])
    assert "TLS connection failed" in services.test_identity_provider(provider=provider, actor=None)[0]
    _, response = _sign_in("bob@ldap.test", "bob-ldap-password")
    assert response.status_code == 400
