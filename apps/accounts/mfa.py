"""TOTP multi-factor authentication: enrolment with a QR code, verification without replay,
and single-use recovery codes."""

from __future__ import annotations

import hashlib
import hmac
import io
import secrets
import time

import pyotp
import qrcode
import qrcode.image.svg
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.audit.services import record_event

from .models import RecoveryCode, TOTPDevice

ISSUER = "Switchyard"
STEP_SECONDS = 30
RECOVERY_CODE_COUNT = 10


def _hash_recovery_code(code: str) -> str:
    normalized = code.strip().replace("-", "").replace(" ", "").lower()
    return hmac.new(settings.SECRET_KEY.encode(), normalized.encode(), hashlib.sha256).hexdigest()


def confirmed_device(user) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed_at__isnull=False).first()


def start_enrolment(*, user) -> TOTPDevice:
    """A new unconfirmed secret for the user (replacing an earlier unconfirmed one)."""
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user, confirmed_at__isnull=True).delete()
        if TOTPDevice.objects.filter(user=user).exists():
            raise ValueError("This account already has an authenticator; remove it first.")
        return TOTPDevice.objects.create(user=user, secret=pyotp.random_base32())


def provisioning_uri(device: TOTPDevice) -> str:
    return pyotp.TOTP(device.secret).provisioning_uri(name=device.user.email, issuer_name=ISSUER)


def qr_svg(uri: str) -> str:
    """The otpauth URI as an inline SVG (rendered here; no outside service sees the secret)."""
    image = qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    buffer = io.BytesIO()
    image.save(buffer)
    svg = buffer.getvalue().decode()
    return svg[svg.index("<svg"):]


def _matching_step(secret: str, code: str, now: float | None = None) -> int | None:
    """The time step (current or one either side, for clock drift) whose code matches."""
    code = (code or "").strip().replace(" ", "")
    if not code.isdigit() or len(code) != 6:
        return None
    totp = pyotp.TOTP(secret)
    current = int((now or time.time()) // STEP_SECONDS)
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.at(step * STEP_SECONDS), code):
            return step
    return None


def _use_code(device: TOTPDevice, code: str) -> bool:
    """Accept the code once: the step is stored under a row lock, so a second use (even racing
    the first) is refused."""
    step = _matching_step(device.secret, code)
    if step is None:
        return False
    locked = TOTPDevice.objects.select_for_update().get(pk=device.pk)
    if locked.last_used_step is not None and step <= locked.last_used_step:
        return False
    TOTPDevice.objects.filter(pk=device.pk).update(last_used_step=step)
    device.last_used_step = step
    return True


def confirm_enrolment(*, user, code: str, request=None) -> list[str] | None:
    """Confirm the pending device with its first code; returns fresh recovery codes, or None."""
    with transaction.atomic():
        device = TOTPDevice.objects.filter(user=user, confirmed_at__isnull=True).first()
        if device is None or not _use_code(device, code):
            record_event(action="mfa.enrol", tenant_id=None, actor=user, resource_type="user",
                         resource_id=str(user.pk), result="failure", request=request)
            return None
        TOTPDevice.objects.filter(pk=device.pk).update(confirmed_at=timezone.now())
        codes = _replace_recovery_codes(user)
        record_event(action="mfa.enrol", tenant_id=None, actor=user, resource_type="user",
                     resource_id=str(user.pk), request=request, metadata={"method": "totp"})
        return codes


def verify(*, user, code: str, request=None) -> str | None:
    """Check a TOTP code or a recovery code; returns "totp" or "recovery_code", or None."""
    with transaction.atomic():
        device = confirmed_device(user)
        method = None
        if device is not None and _use_code(device, code):
            method = "totp"
        elif _use_recovery_code(user, code):
            method = "recovery_code"
        record_event(action="mfa.verify", tenant_id=None, actor=user, resource_type="user",
                     resource_id=str(user.pk), result="success" if method else "failure", request=request,
                     metadata={"method": method} if method else {})
    return method


def _use_recovery_code(user, code: str) -> bool:
    if not code or len(code.strip()) < 10:
        return False
    updated = RecoveryCode.objects.filter(
        user=user, code_hash=_hash_recovery_code(code), used_at__isnull=True
    ).update(used_at=timezone.now())
    return updated == 1


def _replace_recovery_codes(user) -> list[str]:
    RecoveryCode.objects.filter(user=user).delete()
    codes = [f"{secrets.token_hex(4)}-{secrets.token_hex(4)}" for _ in range(RECOVERY_CODE_COUNT)]
    RecoveryCode.objects.bulk_create(RecoveryCode(user=user, code_hash=_hash_recovery_code(c)) for c in codes)
    return codes


def regenerate_recovery_codes(*, user, request=None) -> list[str]:
    with transaction.atomic():
        codes = _replace_recovery_codes(user)
        record_event(action="mfa.recovery_codes_regenerated", tenant_id=None, actor=user, resource_type="user",
                     resource_id=str(user.pk), request=request)
    return codes


def remaining_recovery_codes(user) -> int:
    return RecoveryCode.objects.filter(user=user, used_at__isnull=True).count()


def remove_totp(*, user, actor=None, request=None) -> None:
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).delete()
        RecoveryCode.objects.filter(user=user).delete()
        record_event(action="mfa.remove", tenant_id=None, actor=actor or user, resource_type="user",
                     resource_id=str(user.pk), request=request)
