"""Django admin registrations for users, identity providers, sessions and tokens (secrets hidden)."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from .models import AccessToken, IdentityProvider, RefreshToken, ServiceClient, User, UserSession


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "name", "is_active", "is_platform_admin", "last_login"]
    list_filter = ["is_active", "is_platform_admin", "is_staff"]
    search_fields = ["email", "name"]
    fieldsets = [
        (None, {"fields": ["email", "name", "password"]}),
        ("Access", {"fields": ["is_active", "is_platform_admin", "is_staff", "is_superuser"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]
    filter_horizontal: list = []


@admin.register(IdentityProvider)
class IdentityProviderAdmin(admin.ModelAdmin):
    list_display = ["name", "tenant", "kind", "enabled"]
    list_filter = ["kind", "enabled"]
    exclude = ["oidc_client_secret", "ldap_bind_password"]


@admin.register(UserSession)
class UserSessionAdmin(admin.ModelAdmin):
    list_display = ["user", "method", "ip", "created_at", "last_seen_at", "ended_at"]
    exclude = ["session_key"]


@admin.register(ServiceClient)
class ServiceClientAdmin(admin.ModelAdmin):
    list_display = ["name", "tenant", "client_id", "role", "is_active"]
    exclude = ["secret_hash"]


@admin.register(AccessToken, RefreshToken)
class TokenAdmin(admin.ModelAdmin):
    list_display = ["family", "user", "client", "created_at", "expires_at", "revoked_at"]
    exclude = ["token_hash"]
