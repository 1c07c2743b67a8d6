"""Signal receivers: a disabled user loses every session and token, however they were disabled
(service, Django admin, shell); a signed-out session leaves the session list."""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from .models import User


@receiver(pre_save, sender=User)
def remember_active_flag(sender, instance, update_fields=None, **kwargs):
    # Saves that cannot touch is_active (last_login on every sign-in) skip the extra query.
    if instance.pk and (update_fields is None or "is_active" in update_fields):
        instance._was_active = User.objects.filter(pk=instance.pk).values_list("is_active", flat=True).first()


@receiver(post_save, sender=User)
def end_sessions_of_disabled_user(sender, instance, created, **kwargs):
    was_active = instance.__dict__.pop("_was_active", False)
    if not created and was_active and not instance.is_active:
        from . import sessions, tokens

        with transaction.atomic():
            sessions.end_all_sessions(user=instance, actor=None, reason="user_disabled")
            tokens.revoke_all_for_user(user=instance)


@receiver(user_logged_out)
def forget_ended_session(sender, request, user, **kwargs):
    from . import sessions

    if request is not None and hasattr(request, "session"):
        sessions.mark_ended(request.session.session_key, "signed_out")
