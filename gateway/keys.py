"""Ed25519 keys: files, and the login signature.

Strategy: a private key lives in a PEM file (PKCS8, readable only by its owner); the
exchange stores public keys only, as 32 raw bytes (hex in config files). A session logs in
by signing the server's fresh challenge together with the Login fields, so a captured
signature is worth nothing on another connection (docs/protocol.md, "Login").
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

LOGIN_CONTEXT = b"evx-login-v1\x00"
PUBLIC_KEY_BYTES = 32


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def write_private_key(path: str | Path, key: Ed25519PrivateKey) -> None:
    """Write a key file readable by its owner only (created 0600, never world-readable)."""
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as key_file:
        key_file.write(data)


def read_private_key(path: str | Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} holds no Ed25519 private key")
    return key


def public_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def login_message(nonce: bytes, login_body: bytes) -> bytes:
    """What a Login signs: the context, the server's nonce, and the Login body without its
    signature."""
    return LOGIN_CONTEXT + nonce + login_body


def sign(key: Ed25519PrivateKey, message: bytes) -> bytes:
    return key.sign(message)


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    if len(public_key) != PUBLIC_KEY_BYTES:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
