"""OpenPGP signature checks for RPMs (RFC 4880 v3/v4 signatures; RSA and EdDSA keys).

Only what rpm writes is understood: a public key block (armored or binary), and one
signature packet per signature tag. The cryptography is `cryptography`'s; this module only
finds the bytes: the key material, the signed data and the hashed trailer.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from smith.errors import PackageError

ALGO_RSA = (1, 2, 3)
ALGO_EDDSA_LEGACY = 22
ALGO_ED25519 = 27
ED25519_OID = bytes.fromhex("2b06010401da470f01")

HASHES: dict[int, type[hashes.HashAlgorithm]] = {
    2: hashes.SHA1,
    8: hashes.SHA256,
    9: hashes.SHA384,
    10: hashes.SHA512,
    11: hashes.SHA224,
}
HASHLIB_NAMES = {2: "sha1", 8: "sha256", 9: "sha384", 10: "sha512", 11: "sha224"}


@dataclass(frozen=True)
class PublicKey:
    key_id: bytes  # the low 8 bytes of the v4 fingerprint
    fingerprint: bytes
    algo: int
    material: tuple[bytes, ...]  # RSA: (n, e); EdDSA: (32-byte point,)


@dataclass(frozen=True)
class Signature:
    version: int
    sig_type: int
    algo: int
    hash_algo: int
    hashed: bytes  # the bytes hashed after the data (v4: with its trailer)
    issuer: bytes  # key id, or b"" when the signature does not say
    values: tuple[bytes, ...]  # RSA: (s,); EdDSA: (r, s)


class _Reader:
    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise PackageError(f"{self.what} is truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def byte(self) -> int:
        return self.take(1)[0]

    def mpi(self) -> bytes:
        bits = struct.unpack(">H", self.take(2))[0]
        return self.take((bits + 7) // 8)

    def done(self) -> bool:
        return self.pos >= len(self.data)


def dearmor(data: bytes) -> bytes:
    """The binary packets of an armored block (or `data` itself when it is binary)."""
    text = data.decode("ascii", "replace")
    if "-----BEGIN PGP" not in text:
        return data
    lines = text.split("-----BEGIN PGP", 1)[1].splitlines()[1:]
    body: list[str] = []
    in_headers = True
    for line in lines:
        line = line.strip()
        if line.startswith("-----END PGP"):
            break
        if in_headers:
            if not line:
                in_headers = False
            elif ":" not in line:
                in_headers = False
                body.append(line)
            continue
        if line.startswith("="):
            continue  # CRC24; the packets' own structure is what is checked
        body.append(line)
    try:
        return base64.b64decode("".join(body), validate=True)
    except ValueError:
        raise PackageError("OpenPGP armor is not valid base64") from None


def packets(data: bytes, what: str) -> list[tuple[int, bytes]]:
    r = _Reader(data, what)
    out = []
    while not r.done():
        head = r.byte()
        if not head & 0x80:
            raise PackageError(f"{what}: not an OpenPGP packet (byte {head:#x})")
        if head & 0x40:  # new format
            tag = head & 0x3F
            first = r.byte()
            if first < 192:
                length = first
            elif first < 224:
                length = ((first - 192) << 8) + r.byte() + 192
            elif first == 255:
                length = struct.unpack(">I", r.take(4))[0]
            else:
                raise PackageError(f"{what}: partial-length packets are not supported")
        else:
            tag = (head >> 2) & 0x0F
            ltype = head & 3
            if ltype == 3:
                raise PackageError(f"{what}: indeterminate-length packets are not supported")
            length = int.from_bytes(r.take((1, 2, 4)[ltype]), "big")
        out.append((tag, r.take(length)))
    return out


def parse_public_keys(data: bytes, what: str = "OpenPGP key") -> tuple[PublicKey, ...]:
    keys = []
    for tag, body in packets(dearmor(data), what):
        if tag not in (6, 14):  # public key, public subkey
            continue
        r = _Reader(body, what)
        version = r.byte()
        if version != 4:
            continue  # v3 (MD5 fingerprints) and v6 keys are not used for RPM signing here
        r.take(4)
        algo = r.byte()
        if algo in ALGO_RSA:
            material: tuple[bytes, ...] = (r.mpi(), r.mpi())
        elif algo == ALGO_EDDSA_LEGACY:
            oid = r.take(r.byte())
            point = r.mpi()
            if oid != ED25519_OID or len(point) != 33 or point[0] != 0x40:
                continue
            material = (point[1:],)
        elif algo == ALGO_ED25519:
            material = (r.take(32),)
        else:
            continue
        # RFC 4880 defines the v4 fingerprint as SHA-1; it names the key, nothing more.
        fpr = hashlib.sha1(
            b"\x99" + struct.pack(">H", len(body)) + body, usedforsecurity=False
        ).digest()
        keys.append(PublicKey(fpr[-8:], fpr, algo, material))
    if not keys:
        raise PackageError(f"{what} holds no RSA or EdDSA public key")
    return tuple(keys)


def _subpackets(data: bytes, what: str) -> dict[int, bytes]:
    r = _Reader(data, what)
    out: dict[int, bytes] = {}
    while not r.done():
        first = r.byte()
        if first < 192:
            length = first
        elif first < 255:
            length = ((first - 192) << 8) + r.byte() + 192
        else:
            length = struct.unpack(">I", r.take(4))[0]
        body = r.take(length)
        if body:
            out.setdefault(body[0] & 0x7F, body[1:])
    return out


def parse_signature(data: bytes, what: str) -> Signature:
    pkts = packets(data, what)
    if len(pkts) != 1 or pkts[0][0] != 2:
        raise PackageError(f"{what} is not one OpenPGP signature packet")
    body = pkts[0][1]
    r = _Reader(body, what)
    version = r.byte()
    if version == 3:
        if r.byte() != 5:
            raise PackageError(f"{what}: bad v3 signature")
        hashed = r.take(5)  # signature type and creation time
        issuer = r.take(8)
        algo, hash_algo = r.byte(), r.byte()
        sig_type = hashed[0]
    elif version == 4:
        sig_type, algo, hash_algo = r.byte(), r.byte(), r.byte()
        hashed_len = struct.unpack(">H", r.take(2))[0]
        hashed_sub = r.take(hashed_len)
        unhashed_sub = r.take(struct.unpack(">H", r.take(2))[0])
        prefix = body[: 6 + hashed_len]
        hashed = prefix + b"\x04\xff" + struct.pack(">I", len(prefix))
        subs = {**_subpackets(unhashed_sub, what), **_subpackets(hashed_sub, what)}
        issuer = subs.get(16, b"")
        if not issuer and 33 in subs:
            issuer = subs[33][-8:]
    else:
        raise PackageError(f"{what}: OpenPGP signature version {version} is not supported")
    r.take(2)  # the left 16 bits of the hash, a quick check we do not need
    if algo in ALGO_RSA:
        values: tuple[bytes, ...] = (r.mpi(),)
    elif algo == ALGO_EDDSA_LEGACY:
        values = (r.mpi(), r.mpi())
    elif algo == ALGO_ED25519:
        values = (r.take(64),)
    else:
        raise PackageError(f"{what}: public-key algorithm {algo} is not supported")
    return Signature(version, sig_type, algo, hash_algo, hashed, issuer, values)


def verify(sig: Signature, data: bytes, key: PublicKey) -> bool:
    """Whether `sig` over `data` was made by `key`."""
    hash_cls = HASHES.get(sig.hash_algo)
    if hash_cls is None:
        return False
    try:
        if sig.algo in ALGO_RSA and key.algo in ALGO_RSA:
            n, e = (int.from_bytes(v, "big") for v in key.material)
            pub = rsa.RSAPublicNumbers(e, n).public_key()
            s = sig.values[0].rjust((n.bit_length() + 7) // 8, b"\0")
            pub.verify(s, data + sig.hashed, padding.PKCS1v15(), hash_cls())
            return True
        if sig.algo in (ALGO_EDDSA_LEGACY, ALGO_ED25519) and key.algo in (
            ALGO_EDDSA_LEGACY,
            ALGO_ED25519,
        ):
            if sig.algo == ALGO_ED25519:
                raw = sig.values[0]
            else:
                raw = sig.values[0].rjust(32, b"\0") + sig.values[1].rjust(32, b"\0")
            # OpenPGP EdDSA signs the digest, not the data itself.
            digest = hashlib.new(HASHLIB_NAMES[sig.hash_algo], data + sig.hashed).digest()
            Ed25519PublicKey.from_public_bytes(key.material[0]).verify(raw, digest)
            return True
    except (InvalidSignature, ValueError):
        return False
    return False
