"""Signed reports: an Ed25519 key pair per session (private key root-only), and a detached
signature file `FILE.sig` next to every final report.

`FILE.sig` is JSON: format, algorithm, session, file name, the file's SHA-256, when it was
signed, the public key and the signature (both base64). The signature covers all of it but
the signature itself, so changing the file, the metadata or the key is detected.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl import paths
from labctl.errors import EXIT_TAMPERED, LabctlError
from labctl.session import clock

FORMAT = "labctl.signature/1"
CONTEXT = b"labctl signed report v1\n"


class SignatureError(LabctlError):
    """A report does not match its signature (or has none)."""

    exit_code = EXIT_TAMPERED


def _canonical(meta: dict[str, Any]) -> bytes:
    return CONTEXT + json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def key_id(public_raw: bytes) -> str:
    """A short fingerprint of a public key (first 16 hex digits of its SHA-256)."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


@dataclass(frozen=True)
class Signer:
    """A session's signing key pair, stored in its folder (private key mode 0600)."""

    private_file: Path

    @property
    def public_file(self) -> Path:
        """The public key (raw 32 bytes, base64), to hand to the jury."""
        return self.private_file.with_suffix(".pub")

    def ensure(self) -> None:
        """Make the key pair once."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        if self.private_file.exists():
            return
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        paths.write_atomic(self.private_file, pem, mode=0o600)
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        paths.write_atomic(self.public_file, base64.b64encode(raw).decode() + "\n", mode=0o644)

    def public_raw(self) -> bytes:
        """The raw public key."""
        return base64.b64decode(self.public_file.read_text().strip())

    def sign_file(self, file: Path, session: str) -> Path:
        """Write FILE.sig for `file`; returns its path."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        self.ensure()
        key = serialization.load_pem_private_key(self.private_file.read_bytes(), password=None)
        assert isinstance(key, Ed25519PrivateKey)
        meta = {"format": FORMAT, "algorithm": "Ed25519", "session": session, "file": file.name,
                "sha256": hashlib.sha256(file.read_bytes()).hexdigest(), "signed": clock.stamp(),
                "public_key": base64.b64encode(self.public_raw()).decode(), "key_id": key_id(self.public_raw())}
        signature = key.sign(_canonical(meta))
        out = file.with_name(file.name + ".sig")
        paths.write_atomic(out, json.dumps({**meta, "signature": base64.b64encode(signature).decode()},
                                           indent=2, sort_keys=True) + "\n")
        return out


@dataclass(frozen=True)
class Verified:
    """What a good signature says: which session and key signed which file, when."""

    file: str
    session: str
    key_id: str
    signed: str
    pinned: bool


def verify_file(file: Path, signature_file: Path | None = None, trusted_key: bytes | None = None) -> Verified:
    """Check `file` against its signature; raise SignatureError saying what is wrong.

    With `trusted_key` (raw public key) the signer must be that key; without one, the key in
    the signature file is used and the result says it was not pinned.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    sig_path = signature_file or file.with_name(file.name + ".sig")
    if not file.is_file():
        raise SignatureError(f"{file}: no such file")
    if not sig_path.is_file():
        raise SignatureError(f"{file}: no signature ({sig_path} is missing)",
                             "signed reports come with a .sig file: labctl session report S")
    try:
        data = json.loads(sig_path.read_text())
        signature = base64.b64decode(data.pop("signature"))
        public = base64.b64decode(data["public_key"])
    except (ValueError, KeyError) as exc:
        raise SignatureError(f"{sig_path}: not a labctl signature file ({exc})") from None
    if data.get("format") != FORMAT or data.get("algorithm") != "Ed25519":
        raise SignatureError(f"{sig_path}: unknown signature format {data.get('format')!r}")
    if trusted_key is not None and public != trusted_key:
        raise SignatureError(f"{file}: signed with key {key_id(public)}, not the trusted key {key_id(trusted_key)}")
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, _canonical(data))
    except (InvalidSignature, ValueError):
        raise SignatureError(f"{file}: the signature file was altered (its signature does not verify)") from None
    actual = hashlib.sha256(file.read_bytes()).hexdigest()
    if actual != data["sha256"]:
        raise SignatureError(f"{file}: MODIFIED after signing (SHA-256 {actual[:16]}…, signed {data['sha256'][:16]}…)")
    return Verified(str(file), data["session"], key_id(public), data["signed"], trusted_key is not None)
