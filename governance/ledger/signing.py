"""The registry's Ed25519 signing key for ledger tree heads.

Production sets ``LEDGER_SIGNING_KEY`` (or ``LEDGER_SIGNING_KEY_FILE``) to an Ed25519 private key in
PEM (PKCS#8, unencrypted). Without it, a development key is generated once into
``VAR_DIR/ledger-dev-key.pem`` and reused, with a warning in the log: tree heads signed with it prove
nothing to anyone who does not trust this machine.

Auditors identify the key by its key id, the SHA-256 of the raw 32-byte public key in hex (the rule of
``verify_offline.key_id``), and fetch it from ``GET /api/v1/ledger/public-key/`` or, better, from a
channel they trust more than the registry itself.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .. import verify_offline

logger = logging.getLogger(__name__)

DEV_KEY_NAME = "ledger-dev-key.pem"


def signing_key() -> Ed25519PrivateKey:
    """Return the key that signs tree heads: the configured one, else the development key."""
    configured = (getattr(settings, "LEDGER_SIGNING_KEY", "") or "").strip()
    if configured:
        return _load_private_key(configured)
    if not getattr(settings, "GENERATE_SECRETS", False):  # production: never silently a dev key
        raise ImproperlyConfigured("LEDGER_SIGNING_KEY is not set and GENERATE_SECRETS is off")
    return _development_key(Path(settings.VAR_DIR) / DEV_KEY_NAME)


def public_key() -> Ed25519PublicKey:
    """Return the public half of the signing key."""
    return signing_key().public_key()


def public_key_pem() -> str:
    """Return the public key as SubjectPublicKeyInfo PEM, the form ``verify_offline.py --key`` reads."""
    return (
        public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def key_id() -> str:
    """Return the id of the signing key: SHA-256 of the raw public key, in hex."""
    return verify_offline.key_id(public_key())


def sign(message: bytes) -> str:
    """Return the base64 Ed25519 signature of ``message``."""
    return base64.b64encode(signing_key().sign(message)).decode("ascii")


@functools.cache
def _load_private_key(pem_text: str) -> Ed25519PrivateKey:
    """Parse a PEM private key from the environment; literal "\\n" sequences are accepted for one-line env vars."""
    if "\n" not in pem_text and "\\n" in pem_text:
        pem_text = pem_text.replace("\\n", "\n")
    try:
        key = serialization.load_pem_private_key(pem_text.encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError) as error:
        raise ImproperlyConfigured(
            f"LEDGER_SIGNING_KEY is not an unencrypted PEM private key: {error}"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ImproperlyConfigured("LEDGER_SIGNING_KEY must be an Ed25519 private key")
    return key


@functools.cache
def _development_key(path: Path) -> Ed25519PrivateKey:
    """Return the development key at ``path``, generating it the first time (safe across processes)."""
    if not path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: when two processes (test workers, a web server and a task) race, one key wins and
        # both use it; a key overwritten later would orphan every head signed before.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as out:
                out.write(pem)
    text = path.read_text()
    if not text.strip():  # the winner of the race has created the file but not written it yet
        time.sleep(0.2)
        text = path.read_text()
    logger.warning(
        "LEDGER_SIGNING_KEY is not set: signing ledger tree heads with the development key %s. "
        "Set LEDGER_SIGNING_KEY (or LEDGER_SIGNING_KEY_FILE) in production.",
        path,
    )
    return _load_private_key(text.strip())
