"""Run the DICOM receiver: a Storage SCP for mammograms and a Verification SCP (C-ECHO)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from screening.exchange import receiver


class Command(BaseCommand):
    help = "Receive mammograms over DICOM C-STORE (allow-list: PORTAL_DICOM_ALLOWED_AES)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=11112)
        parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all)")
        parser.add_argument("--ae-title", default="SCREENING", help="this node's AE title (called AE)")
        parser.add_argument("--tls-cert", default="", help="PEM certificate: serve DICOM over TLS")
        parser.add_argument("--tls-key", default="", help="PEM private key of --tls-cert")

    def handle(self, *args, port: int, host: str, ae_title: str, tls_cert: str, tls_key: str, **options):
        if not 0 < port < 65536:
            raise CommandError(f"--port must be 1 to 65535, got {port}")
        if not ae_title.strip() or len(ae_title) > 16 or "\\" in ae_title:
            raise CommandError("--ae-title must be 1 to 16 characters without a backslash")
        if bool(tls_cert) != bool(tls_key):
            raise CommandError("--tls-cert and --tls-key go together")
        ssl_context = None
        if tls_cert:
            try:
                ssl_context = receiver.tls_context(tls_cert, tls_key)
            except (OSError, ValueError) as exc:
                raise CommandError(f"cannot load the TLS certificate or key: {exc}") from None
        peers = sorted(receiver.allowed_peers())
        connections.close_all()  # the associations run in their own threads
        self.stdout.write(
            f"DICOM receiver: AE title {ae_title}, port {port}{' (TLS)' if ssl_context else ''}; "
            f"allowed calling AEs: {', '.join(f'{ae}@{ip}' for ae, ip in peers) or 'none'}"
        )
        if not peers:
            self.stderr.write(
                "No calling AE is allowed yet: set PORTAL_DICOM_ALLOWED_AES or add DICOM peers in the admin"
            )
        try:
            receiver.start(port=port, ae_title=ae_title, host=host, ssl_context=ssl_context, block=True)
        except OSError as exc:
            raise CommandError(f"cannot listen on {host}:{port}: {exc}") from None
        except KeyboardInterrupt:
            pass
