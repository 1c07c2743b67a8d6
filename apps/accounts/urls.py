from django.urls import path

from . import views

app_name = "accounts"

# Sign-in entry points take `tenant_slug`: they are public (anonymous users and IdPs reach them),
# unlike the tenant-scoped settings pages below, which take `tenant_id`.
urlpatterns = [
    path("signin/", views.signin, name="signin"),
    path("signin/t/<slug:tenant_slug>/", views.signin, name="signin-tenant"),
    path("signout/", views.signout, name="signout"),
    path("mfa/verify/", views.mfa_verify, name="mfa-verify"),
    path("mfa/enrol/", views.mfa_enrol, name="mfa-enrol"),
    path("reauth/", views.reauth, name="reauth"),
    path("security/", views.security, name="security"),
    path("security/recovery-codes/", views.recovery_codes_regenerate, name="recovery-codes"),
    path("security/mfa/remove/", views.mfa_remove, name="mfa-remove"),
    path("security/email/", views.email_change, name="email-change"),
    path("security/password/", views.password_change, name="password-change"),
    path("security/sessions/end-others/", views.sessions_end_others, name="sessions-end-others"),
    path("security/sessions/<int:session_id>/end/", views.session_end, name="session-end"),
    path("users/<int:user_id>/sessions/", views.user_sessions, name="user-sessions"),
    path("saml/<slug:tenant_slug>/metadata/", views.saml_metadata, name="saml-metadata"),
    path("saml/<slug:tenant_slug>/login/", views.saml_login, name="saml-login"),
    path("saml/<slug:tenant_slug>/acs/", views.saml_acs, name="saml-acs"),
    path("saml/<slug:tenant_slug>/sls/", views.saml_sls, name="saml-sls"),
    path("oidc/<slug:tenant_slug>/login/", views.oidc_login, name="oidc-login"),
    path("oidc/<slug:tenant_slug>/callback/", views.oidc_callback, name="oidc-callback"),
    path("tenants/<slug:tenant_id>/identity/", views.provider_list, name="provider-list"),
    path("tenants/<slug:tenant_id>/identity/new/", views.provider_edit, name="provider-new"),
    path("tenants/<slug:tenant_id>/identity/<uuid:provider_id>/", views.provider_edit, name="provider-edit"),
    path("tenants/<slug:tenant_id>/identity/<uuid:provider_id>/test/", views.provider_test, name="provider-test"),
    path("tenants/<slug:tenant_id>/identity/<uuid:provider_id>/delete/", views.provider_delete, name="provider-delete"),
]
