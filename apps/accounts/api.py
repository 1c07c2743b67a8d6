"""Management API of the accounts app: the token endpoint (client credentials, password + TOTP,
refresh), revocation, identity providers and service clients."""

from __future__ import annotations

from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.audit.services import record_event
from apps.core.api import ScopedViewSet
from apps.core.errors import error_response
from apps.core.middleware import client_ip
from apps.core.roles import Role

from . import bruteforce, mfa, selectors, services, sessions, tokens
from .forms import COMMON_FIELDS, KIND_FIELDS
from .models import IdentityProvider, ServiceClient, User

GRANTS = ("client_credentials", "password", "refresh_token")


class TokenRequestSerializer(serializers.Serializer):
    grant_type = serializers.ChoiceField(choices=GRANTS)
    client_id = serializers.CharField(required=False, allow_blank=False, max_length=64)
    client_secret = serializers.CharField(required=False, allow_blank=False, max_length=200, trim_whitespace=False)
    email = serializers.EmailField(required=False)
    password = serializers.CharField(required=False, trim_whitespace=False, max_length=500)
    totp = serializers.CharField(required=False, allow_blank=True, max_length=32)
    refresh_token = serializers.CharField(required=False, max_length=200)

    def validate(self, attrs):
        needed = {
            "client_credentials": ("client_id", "client_secret"),
            "password": ("email", "password"),
            "refresh_token": ("refresh_token",),
        }[attrs["grant_type"]]
        missing = {name: ["This field is required for this grant_type."] for name in needed if not attrs.get(name)}
        if missing:
            raise serializers.ValidationError(missing)
        return attrs


class TokenResponseSerializer(serializers.Serializer):
    access_token = serializers.CharField()
    token_type = serializers.CharField()
    expires_in = serializers.IntegerField()
    refresh_token = serializers.CharField()


def _refused(message: str = "The credentials are not valid.", status_code: int = 401):
    return error_response(status_code, message, code="invalid_grant")


class TokenView(APIView):
    """POST /api/v1/auth/token: an access token (3,600 s) and a rotating refresh token."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(request=TokenRequestSerializer, responses={200: TokenResponseSerializer})
    def post(self, request):
        serializer = TokenRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        grant = data["grant_type"]
        ip = client_ip(request)
        if grant == "refresh_token":
            try:
                issued = tokens.refresh(refresh_token=data["refresh_token"], request=request)
            except tokens.TokenError as exc:
                return _refused(str(exc))
            return Response(issued.as_response())

        identifier = data.get("client_id") or data.get("email")
        if bruteforce.is_locked(identifier=identifier, ip=ip):
            record_event(action="token.issue", tenant_id=None, result="denied", request=request,
                         metadata={"grant": grant, "reason": "locked"})
            return _refused(bruteforce.LOCKED_MESSAGE, 429)
        if grant == "client_credentials":
            try:
                issued = tokens.issue_for_client(client_id=data["client_id"], client_secret=data["client_secret"], request=request)
            except tokens.TokenError as exc:
                self._failed(request, identifier, grant, "bad client credentials")
                return _refused(str(exc))
            bruteforce.record_success(identifier=identifier)
            return Response(issued.as_response())

        user = authenticate(request, email=data["email"], password=data["password"])
        if user is None:
            self._failed(request, identifier, grant, "bad credentials")
            return _refused()
        if mfa.confirmed_device(user) is not None:
            if not data.get("totp") or mfa.verify(user=user, code=data["totp"], request=request) != "totp":
                self._failed(request, identifier, grant, "bad or missing totp")
                return _refused("The credentials are not valid (a current TOTP code is required).")
        elif user.mfa_required():
            self._failed(request, identifier, grant, "mfa not enrolled")
            return _refused("This account must enrol MFA in the console before using the API.", 403)
        bruteforce.record_success(identifier=identifier)
        return Response(tokens.issue_for_user(user=user, request=request).as_response())

    @staticmethod
    def _failed(request, identifier, grant, reason):
        bruteforce.record_failure(identifier=identifier, ip=client_ip(request))
        record_event(action="token.issue", tenant_id=None, result="failure", request=request,
                     metadata={"grant": grant, "reason": reason})


class RevokeSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=200)


class RevokeView(APIView):
    """POST /api/v1/auth/revoke: revokes the token's whole family (RFC 7009: 200 even when unknown)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(request=RevokeSerializer, responses={200: None})
    def post(self, request):
        serializer = RevokeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        tokens.revoke(token=serializer.validated_data["token"], request=request)
        return Response({"revoked": True})


class IdentityProviderSerializer(serializers.ModelSerializer):
    oidc_client_secret = serializers.CharField(write_only=True, required=False, allow_blank=True, allow_null=True)
    ldap_bind_password = serializers.CharField(write_only=True, required=False, allow_blank=True, allow_null=True)
    has_client_secret = serializers.SerializerMethodField()
    has_bind_password = serializers.SerializerMethodField()
    tenant = serializers.CharField(source="tenant_id")

    class Meta:
        model = IdentityProvider
        fields = ["id", "tenant", *COMMON_FIELDS, *[f for fs in KIND_FIELDS.values() for f in fs],
                  "has_client_secret", "has_bind_password", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]

    def get_has_client_secret(self, obj) -> bool:
        return bool(obj.__dict__.get("oidc_client_secret"))

    def get_has_bind_password(self, obj) -> bool:
        return bool(obj.__dict__.get("ldap_bind_password"))

    def validate_role_mapping(self, value):
        if not isinstance(value, dict) or any(role not in Role.values for role in value.values()):
            raise serializers.ValidationError(f"Map group names to one of: {', '.join(Role.values)}.")
        return value

    def validate_email_domains(self, value):
        value = [d.strip().lower() for d in value if d.strip()]
        taken = IdentityProvider.objects.filter(email_domains__overlap=value or ["\x00"])
        if self.instance is not None:
            taken = taken.exclude(pk=self.instance.pk)
        if value and taken.exists():
            raise serializers.ValidationError("A domain here is already served by another identity provider.")
        return value

    def validate(self, attrs):
        kind = attrs.get("kind") or getattr(self.instance, "kind", None)
        if self.instance is not None and "kind" in attrs and attrs["kind"] != self.instance.kind:
            raise serializers.ValidationError({"kind": ["The kind of a provider cannot change."]})
        required = {
            "saml": ["saml_idp_entity_id", "saml_sso_url", "saml_idp_x509_cert"],
            "oidc": ["oidc_issuer", "oidc_client_id"],
            "ldap": ["ldap_server_uri", "ldap_user_search_base"],
        }.get(kind, [])
        missing = {n: ["This field is required for this kind of provider."] for n in required
                   if not (attrs.get(n) if n in attrs else getattr(self.instance, n, None))}
        if missing:
            raise serializers.ValidationError(missing)
        return attrs


class IdentityProviderViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                              mixins.UpdateModelMixin, mixins.DestroyModelMixin, ScopedViewSet):
    """A tenant's identity providers. Tenant admins manage their own; secrets are write-only."""

    queryset = IdentityProvider.objects.all()
    serializer_class = IdentityProviderSerializer
    action_permissions = {"list": "manage", "retrieve": "manage"}

    def get_queryset(self):
        # Lists show only tenants the user manages; a single object of a tenant the user only
        # belongs to is found and then refused (403), as elsewhere.
        return selectors.identity_providers(self.request.user, "manage" if self.action == "list" else "view")

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        tenant_id = data.pop("tenant_id", None) if "tenant_id" in data else data.pop("tenant", {}).get("id")
        tenant = self._tenant_for_write(tenant_id)
        serializer.instance = services.create_identity_provider(tenant=tenant, actor=self.request.user, request=self.request, **data)

    def perform_update(self, serializer):
        data = dict(serializer.validated_data)
        data.pop("tenant_id", None)
        data.pop("kind", None)
        serializer.instance = services.update_identity_provider(provider=serializer.instance, actor=self.request.user,
                                                                request=self.request, **data)

    def perform_destroy(self, instance):
        services.delete_identity_provider(provider=instance, actor=self.request.user, request=self.request)

    def _tenant_for_write(self, tenant_id):
        from apps.core.mixins import get_tenant_or_404

        return get_tenant_or_404(self.request.user, tenant_id, "manage")

    @extend_schema(request=None, responses={200: None}, description="Check the provider's configuration and reachability.")
    @action(detail=True, methods=["post"], url_path="test")
    def test_connection(self, request, pk=None):
        provider = self.get_object()
        problems = services.test_identity_provider(provider=provider, actor=request.user, request=request)
        return Response({"ok": not problems, "problems": problems})


class ServiceClientSerializer(serializers.ModelSerializer):
    tenant = serializers.CharField(source="tenant_id")
    client_secret = serializers.SerializerMethodField()

    class Meta:
        model = ServiceClient
        fields = ["id", "tenant", "name", "client_id", "role", "is_active", "created_at", "client_secret"]
        read_only_fields = ["id", "client_id", "is_active", "created_at"]

    def get_client_secret(self, obj) -> str | None:
        # Shown once, in the response that created it.
        return getattr(obj, "_new_secret", None)


class ServiceClientViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                           mixins.DestroyModelMixin, ScopedViewSet):
    """Machine identities of a tenant for the client-credentials grant. Deleting one revokes its tokens."""

    queryset = ServiceClient.objects.all()
    serializer_class = ServiceClientSerializer
    action_permissions = {"list": "manage", "retrieve": "manage"}

    def get_queryset(self):
        return selectors.service_clients(self.request.user, "manage" if self.action == "list" else "view")

    def perform_create(self, serializer):
        from apps.core.mixins import get_tenant_or_404

        tenant = get_tenant_or_404(self.request.user, serializer.validated_data["tenant_id"], "manage")
        client, secret = tokens.create_service_client(
            tenant_id=tenant.pk, name=serializer.validated_data["name"], role=serializer.validated_data.get("role", Role.MEMBER),
            created_by=self.request.user if isinstance(self.request.user, User) else None, request=self.request,
        )
        client._new_secret = secret
        serializer.instance = client

    def perform_destroy(self, instance):
        tokens.delete_service_client(client=instance, actor=self.request.user, request=self.request)


class WhoAmIView(APIView):
    """GET /api/v1/auth/whoami: the principal this request authenticated as."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: None})
    def get(self, request):
        user = request.user
        if isinstance(user, tokens.ServicePrincipal):
            return Response({"kind": "service_client", "client_id": user.client_id, "tenant": user.tenant_id, "role": user.role})
        return Response({"kind": "user", "id": user.pk, "email": user.email, "platform_admin": user.is_platform_admin,
                         "tenants": user.tenant_roles()})


class UserSessionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    method = serializers.CharField()
    ip = serializers.IPAddressField(allow_null=True)
    user_agent = serializers.CharField()
    created_at = serializers.DateTimeField()
    last_seen_at = serializers.DateTimeField()


class MySessionsView(APIView):
    """GET /api/v1/auth/sessions: the signed-in user's console sessions."""

    @extend_schema(responses={200: UserSessionSerializer(many=True)})
    def get(self, request):
        if not isinstance(request.user, User):
            return error_response(403, "Service clients have no console sessions.")
        return Response(UserSessionSerializer(sessions.active_sessions(request.user), many=True).data)


class EndUserSessionsView(APIView):
    """POST /api/v1/auth/users/{id}/end-sessions: an admin signs a user out everywhere and
    revokes their API tokens."""

    @extend_schema(request=None, responses={200: None})
    def post(self, request, user_id: int):
        if not isinstance(request.user, User):
            return error_response(403, "Only people may end sessions.")
        target = selectors.managed_user(request.user, user_id)
        ended = sessions.end_all_sessions(user=target, actor=request.user, request=request)
        revoked = tokens.revoke_all_for_user(user=target, actor=request.user, request=request)
        return Response({"sessions_ended": ended, "token_families_revoked": revoked})
