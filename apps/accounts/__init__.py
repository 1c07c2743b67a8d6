"""Users and sign-in: local password (MFA, SAML, OIDC and LDAP slot into the same flow)."""
