"""Signing keys in the format cosign and containers/image (skopeo, podman) read.

The private key is an ECDSA P-256 key as PKCS#8 DER, encrypted the way cosign's
`generate-key-pair` does it (go-securesystemslib's `encrypted` package): scrypt derives a
key from the passphrase, NaCl secretbox seals the DER, and the JSON envelope of both is the
body of a PEM block "ENCRYPTED COSIGN PRIVATE KEY" (the name every cosign and every
containers/image release accepts; cosign 2 also writes "ENCRYPTED SIGSTORE PRIVATE KEY",
which smith reads too). The public key is a plain PKIX "PUBLIC KEY" PEM.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass

import nacl.exceptions
import nacl.secret
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from smith.errors import SignatureError

PRIVATE_PEM_TYPES = ("ENCRYPTED COSIGN PRIVATE KEY", "ENCRYPTED SIGSTORE PRIVATE KEY")
# go-securesystemslib's default (and "legacy") scrypt parameters: the ones every reader
# accepts (newer readers refuse parameters they do not know, against a DoS by the file).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 32768, 8, 1
KNOWN_SCRYPT = {(32768, 8, 1), (65536, 8, 1)}
SALT_BYTES = 32


@dataclass(frozen=True)
class KeyPair:
    private_pem: bytes
    public_pem: bytes


PASSPHRASE_ENV = "SMITH_PASSPHRASE"  # noqa: S105 - the name of a variable, not a secret


def read_passphrase(path: str | None) -> bytes:
    """The passphrase of a private key: the first line of `path` (as skopeo's
    --sign-passphrase-file), else $SMITH_PASSPHRASE, else empty (as cosign allows)."""
    if path is None:
        return os.environ.get(PASSPHRASE_ENV, "").encode()
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 16)
    except OSError as err:
        raise SignatureError(f"cannot read the passphrase file {path}: {err.strerror}") from None
    return data.split(b"\n", 1)[0].removesuffix(b"\r")


def read_key_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(1 << 16)
    except OSError as err:
        raise SignatureError(f"cannot read the key {path}: {err.strerror}") from None


def load_signer(path: str, passphrase_file: str | None) -> ec.EllipticCurvePrivateKey:
    """The private key at `path`, opened with the passphrase `read_passphrase` finds."""
    return load_private_key(read_key_file(path), read_passphrase(passphrase_file), path)


def generate_keypair(passphrase: bytes) -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return KeyPair(encrypt_private_key(der, passphrase), public_pem(key.public_key()))


def public_pem(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def encrypt_private_key(der: bytes, passphrase: bytes) -> bytes:
    salt = os.urandom(SALT_BYTES)
    box = nacl.secret.SecretBox(scrypt(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P))
    nonce = os.urandom(nacl.secret.SecretBox.NONCE_SIZE)
    envelope = {
        "kdf": {
            "name": "scrypt",
            "params": {"N": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P},
            "salt": b64(salt),
        },
        "cipher": {"name": "nacl/secretbox", "nonce": b64(nonce)},
        "ciphertext": b64(box.encrypt(der, nonce).ciphertext),
    }
    return pem_block(PRIVATE_PEM_TYPES[0], json.dumps(envelope).encode())


def load_private_key(pem: bytes, passphrase: bytes, where: str) -> ec.EllipticCurvePrivateKey:
    body = pem_body(pem, PRIVATE_PEM_TYPES, where)
    try:
        envelope = json.loads(body)
        kdf, cipher = envelope["kdf"], envelope["cipher"]
        params = kdf["params"]
        n, r, p = int(params["N"]), int(params["r"]), int(params["p"])
        salt, nonce = unb64(kdf["salt"]), unb64(cipher["nonce"])
        sealed = unb64(envelope["ciphertext"])
        names = (kdf["name"], cipher["name"])
    except (ValueError, KeyError, TypeError, binascii.Error) as err:
        raise SignatureError(f"{where}: not an encrypted cosign key ({err})") from None
    if names != ("scrypt", "nacl/secretbox") or (n, r, p) not in KNOWN_SCRYPT:
        raise SignatureError(f"{where}: unsupported key encryption {names} with N={n} r={r} p={p}")
    try:
        der = nacl.secret.SecretBox(scrypt(passphrase, salt, n, r, p)).decrypt(sealed, nonce)
    except (nacl.exceptions.CryptoError, ValueError):
        raise SignatureError(f"{where}: the passphrase does not open this key") from None
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise SignatureError(f"{where}: not an ECDSA P-256 key")
    return key


def load_public_key(pem: bytes, where: str) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        # cryptography's message is a paragraph with a link; the file's name says enough.
        raise SignatureError(f"{where}: not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise SignatureError(f"{where}: not an ECDSA P-256 public key")
    return key


def scrypt(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    # maxmem above 128*N*r: OpenSSL's default limit (32 MiB) is exactly what N=32768 needs.
    return hashlib.scrypt(passphrase, salt=salt, n=n, r=r, p=p, maxmem=256 << 20, dklen=32)


def pem_block(kind: str, body: bytes) -> bytes:
    text = base64.b64encode(body).decode()
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return (f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----\n").encode()


def pem_body(pem: bytes, kinds: tuple[str, ...], where: str) -> bytes:
    text = pem.decode("ascii", "replace")
    for kind in kinds:
        begin, end = f"-----BEGIN {kind}-----", f"-----END {kind}-----"
        if begin in text and end in text:
            inner = text.split(begin, 1)[1].split(end, 1)[0]
            try:
                return base64.b64decode("".join(inner.split()), validate=True)
            except binascii.Error:
                break
    raise SignatureError(f"{where}: not a {kinds[0]} PEM file")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)
