"""valmont-libcrypt @VERSION@: Menuiseries Valmont's shared cryptography helpers (lab package)."""

import hashlib
import hmac

VERSION = "@VERSION@"


def sign(key: bytes, message: bytes) -> str:
    """An HMAC-SHA256 of `message` (hex)."""
    return hmac.new(key, message, hashlib.sha256).hexdigest()
