import logging
import os

from django.core.management.base import BaseCommand

from reviewapp.demo.seed import demo_seed


class Command(BaseCommand):
    help = "Seed demo users, use cases on real data, trained models and weeks of history."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=21)
        parser.add_argument("--per-day", type=int, default=160)
        parser.add_argument("--password", default=None, help="One password for every user.")

    def handle(self, *args, days, per_day, password, **options):
        # Thousands of replayed items would each log an event line, and every task run in process
        # a "succeeded" line; the progress lines and the summary say enough.
        for name in ("reviewapp.events", "celery.app.trace"):
            logging.getLogger(name).setLevel(logging.WARNING)
        passwords = demo_seed(days=days, per_day=per_day, password=password, log=self.stdout.write)
        self.stdout.write("")
        # `make demo` serves on its HOST and PORT and passes them on.
        address = f"{os.environ.get('HOST') or '127.0.0.1'}:{os.environ.get('PORT') or '8000'}"
        self.stdout.write(self.style.SUCCESS(f"Sign in at http://{address}/ as:"))
        for username, secret in passwords.items():
            self.stdout.write(f"  {username:<12} {secret}")
        from rest_framework.authtoken.models import Token

        token = Token.objects.filter(user__username="upstream").first()
        if token:
            self.stdout.write(f"API token of 'upstream' (the upstream system): {token.key}")
