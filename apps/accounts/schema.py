"""OpenAPI description of the accounts authentication class (drf-spectacular extension)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerAccessTokenScheme(OpenApiAuthenticationExtension):
    target_class = "apps.accounts.tokens.BearerTokenAuthentication"
    name = "accessToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An access token (sya_...) from POST /api/v1/auth/token, valid for one hour.",
        }
