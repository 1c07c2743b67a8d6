"""manage.py end_user_sessions EMAIL [--disable]: sign a user out everywhere and revoke their tokens."""

from django.core.management.base import BaseCommand, CommandError

from apps.accounts import services, sessions, tokens
from apps.accounts.models import User


class Command(BaseCommand):
    help = "End every console session of a user and revoke their API tokens; --disable also disables the account."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--disable", action="store_true", help="Also disable the account.")

    def handle(self, *args, email, disable, **options):
        user = User.objects.filter(email__iexact=email.strip()).first()
        if user is None:
            raise CommandError(f"No user with email {email!r}.")
        if disable:
            # The post_save receiver ends sessions and revokes tokens of a user being disabled.
            services.set_user_active(user=user, active=False, actor=None)
            self.stdout.write(f"Disabled {user.email}; sessions ended and tokens revoked.")
            return
        ended = sessions.end_all_sessions(user=user, actor=None, reason="ended_by_operator")
        revoked = tokens.revoke_all_for_user(user=user)
        self.stdout.write(f"Ended {ended} session(s) and revoked {revoked} token family(ies) of {user.email}.")
