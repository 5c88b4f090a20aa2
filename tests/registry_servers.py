"""Real registries for the tests: Debian's docker-registry on 127.0.0.1 (plain HTTP,
htpasswd over TLS, or bearer tokens from `TokenServer`), and `FaultProxy`, a reverse proxy
that counts upload bytes and injects faults (500, reset, stall, wrong bytes) on demand."""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import http.client
import json
import os
import socket
import struct
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

SERVICE = "smith-test-registry"
ISSUER = "smith-test-issuer"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def listens(pid: int, port: int) -> bool:
    """Whether process `pid` itself listens on 127.0.0.1:`port`. Other suites run on this
    machine at the same time: a port that answers may belong to someone else's server."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A" and fields[9] in inodes:
                return True
    return False


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> bool:
    """True once `proc` listens on `port`; False if it exited (the port was taken)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if listens(proc.pid, port):
            return True
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}: {log.read_text()[-2000:]}")


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    scheme: str
    proc: subprocess.Popen[bytes]
    root: Path
    ca_dir: Path | None = None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_registry(
    tmp: Path,
    binary: str,
    *,
    auth: dict[str, Any] | None = None,
    tls: tuple[Path, Path] | None = None,
    ca_dir: Path | None = None,
) -> Registry:
    tmp.mkdir(parents=True, exist_ok=True)
    for _ in range(5):  # free_port() races with every other process picking ports
        reg = try_start_registry(tmp, binary, free_port(), auth, tls, ca_dir)
        if reg is not None:
            return reg
    raise RuntimeError(f"docker-registry did not start: {(tmp / 'registry.log').read_text()}")


def try_start_registry(
    tmp: Path,
    binary: str,
    port: int,
    auth: dict[str, Any] | None,
    tls: tuple[Path, Path] | None,
    ca_dir: Path | None,
) -> Registry | None:
    http_conf: dict[str, Any] = {"addr": f"127.0.0.1:{port}", "secret": "test-upload-secret"}
    if tls:
        http_conf["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(tmp / "data")},
            "delete": {"enabled": True},
        },
        "http": http_conf,
    }
    if auth:
        config["auth"] = auth
    conf = tmp / "config.yml"
    conf.write_text(json.dumps(config))  # JSON is YAML
    log = tmp / "registry.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([binary, "serve", str(conf)], stdout=out, stderr=subprocess.STDOUT)
    if not wait_for_port(port, proc, log):
        return None
    return Registry(f"127.0.0.1:{port}", "https" if tls else "http", proc, tmp, ca_dir)


# -- TLS material ---------------------------------------------------------------------------


def make_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca dir, cert, key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smith test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_dir = directory / "certs"
    ca_dir.mkdir(parents=True)
    (ca_dir / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return ca_dir, cert_path, key_path


def write_htpasswd(path: Path, user: str, password: str) -> None:
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    path.write_text(f"{user}:{hashed}\n")


# -- bearer tokens --------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_key_id(public_key: rsa.RSAPublicKey) -> str:
    """docker/libtrust's key id, which distribution v2.8 looks a JWT's `kid` up by: the
    SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits, base32, in groups of four."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


@dataclass
class TokenServer:
    """Issues RS256 JWTs for the registry's `auth.token` configuration. Credentials are
    checked with basic auth; anonymous callers get pull rights only."""

    user: str
    password: str
    directory: Path
    answer_field: str = "token"  # or "access_token"
    issued: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.datetime.now(datetime.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .sign(self.key, hashes.SHA256())
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        self.rootcert = self.directory / "token-root.pem"
        self.rootcert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.kid = libtrust_key_id(self.key.public_key())
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def auth_config(self) -> dict[str, Any]:
        return {
            "token": {
                "realm": self.realm,
                "service": SERVICE,
                "issuer": ISSUER,
                "rootcertbundle": str(self.rootcert),
            }
        }

    def sign(self, subject: str, access: list[dict[str, Any]]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        claims = {
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 30,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = (
            f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        )
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(signature)}"

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        query = parse_qs(urlsplit(req.path).query)
        self.requests.append(req.path)
        given = req.headers.get("Authorization", "")
        authenticated = False
        if given:
            expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            if given != f"Basic {expected}":
                req.send_response(401)
                req.send_header("Content-Length", "0")
                req.end_headers()
                return
            authenticated = True
        access = []
        for scope in query.get("scope", []):
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            granted = actions.split(",") if authenticated else ["pull"]
            access.append({"type": kind, "name": name, "actions": granted})
        token = self.sign(self.user if authenticated else "", access)
        self.issued.append(token)
        body = json.dumps({self.answer_field: token, "expires_in": 300}).encode()
        req.send_response(200)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# -- the fault-injecting proxy --------------------------------------------------------------


@dataclass
class Fault:
    method: str
    path_part: str  # a substring of the request path
    # "500", "429": that answer. "reset": half the body, then a TCP RST. "truncate": half
    # the body, then an orderly close. "stall": no answer for stall_seconds. "stall-body":
    # half the body, then silence. "corrupt": one byte flipped. "reset-upload": RST halfway
    # through a request body. "refuse-oci": 400 MANIFEST_INVALID to an OCI manifest.
    # "redirect": 307 to a presigned URL on another host name.
    kind: str
    times: int = 1


PRESIGNED = "presigned-signature-0b5e"
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


class FaultProxy:
    """A reverse proxy in front of a plain-HTTP registry. It counts the request bytes of
    blob uploads, and applies queued faults once each, first match first."""

    def __init__(self, upstream: str, stall_seconds: float = 4.0) -> None:
        self.upstream = upstream
        self.stall_seconds = stall_seconds
        self.faults: list[Fault] = []
        self.fired: list[str] = []
        self.seen: list[str] = []
        self.redirected_auth: list[str] = []
        self.ranges: list[str] = []  # Range headers seen: resumed downloads
        self.presigned_auth: dict[str, str] = {}
        self.upload_bytes = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one_request(self) -> None:
                try:
                    super().handle_one_request()
                except (ConnectionError, BrokenPipeError):
                    self.close_connection = True

            def finish(self) -> None:
                # After a deliberate reset the socket is gone: flushing it must not fail.
                with contextlib.suppress(OSError, ValueError):
                    super().finish()

            def do_any(self) -> None:
                proxy.forward(self)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = do_any

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def add(self, method: str, path_part: str, kind: str, times: int = 1) -> None:
        with self.lock:
            self.faults.append(Fault(method, path_part, kind, times))

    def clear(self) -> None:
        with self.lock:
            self.faults.clear()
            self.fired.clear()
            self.seen.clear()
            self.ranges.clear()
            self.upload_bytes = 0

    def take(self, method: str, path: str) -> str:
        with self.lock:
            self.seen.append(f"{method} {path.split('?')[0]}")
            if path.startswith("/redirected/"):
                return ""  # the far side of a redirect is storage, not the registry
            for fault in self.faults:
                if fault.method == method and fault.path_part in path and fault.times > 0:
                    fault.times -= 1
                    self.fired.append(f"{fault.kind} {method} {path.split('?')[0]}")
                    return fault.kind
        return ""

    def forward(self, req: BaseHTTPRequestHandler) -> None:
        fault = self.take(req.command, req.path)
        if req.headers.get("Range"):
            with self.lock:
                self.ranges.append(req.headers["Range"])
        length = int(req.headers.get("Content-Length") or 0)
        is_upload = "/blobs/uploads/" in req.path and req.command in ("PUT", "PATCH")
        if fault == "refuse-oci" and "oci" in req.headers.get("Content-Type", ""):
            drop_body(req, length)
            body = b'{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid"}]}'
            req.send_response(400)
            req.send_header("Content-Type", "application/json")
            req.send_header("Content-Length", str(len(body)))
            req.end_headers()
            req.wfile.write(body)
            return
        if fault == "redirect":  # as registries on S3 do: a presigned URL, elsewhere
            drop_body(req, length)
            # The presigned URL is its own authority: remember the registry credentials
            # for the storage side of this proxy to use.
            self.presigned_auth[req.path] = req.headers.get("Authorization", "")
            req.send_response(307)
            # Another host name for the same proxy: smith must not send Authorization there.
            port = self.host.rsplit(":", 1)[1]
            target = f"http://localhost:{port}/redirected{req.path}?X-Amz-Signature={PRESIGNED}"
            req.send_header("Location", target)
            req.send_header("Content-Length", "0")
            req.end_headers()
            return
        path = req.path
        storage_auth = ""
        if path.startswith("/redirected/"):
            path = path.removeprefix("/redirected").split("?")[0]
            self.redirected_auth.append(req.headers.get("Authorization", ""))
            storage_auth = self.presigned_auth.get(path, "")
        if fault in ("500", "429", "stall"):
            drop_body(req, length)
            if fault == "stall":
                time.sleep(self.stall_seconds)
                reset(req)
                return
            req.send_response(int(fault))
            if fault == "429":
                req.send_header("Retry-After", "0")
            req.send_header("Content-Length", "0")
            req.end_headers()
            return
        upstream = http.client.HTTPConnection(self.upstream, timeout=60)
        try:
            upstream.putrequest(req.command, path, skip_host=True, skip_accept_encoding=True)
            for key, value in req.headers.items():
                if key.lower() not in HOP_HEADERS and key.lower() != "authorization":
                    upstream.putheader(key, value)
            auth = storage_auth if path != req.path else req.headers.get("Authorization")
            if auth:
                upstream.putheader("Authorization", auth)
            upstream.endheaders()
            left = length
            while left:
                data = req.rfile.read(min(left, 1 << 20))
                if not data:
                    break
                left -= len(data)
                if is_upload:
                    with self.lock:
                        self.upload_bytes += len(data)
                if fault == "reset-upload" and left < length // 2:
                    reset(req)
                    return
                upstream.send(data)
            resp = upstream.getresponse()
            req.send_response_only(resp.status, resp.reason)
            body_length = resp.getheader("Content-Length")
            for key, value in resp.getheaders():
                if key.lower() not in HOP_HEADERS:
                    req.send_header(key, value)
            if body_length is None and req.command != "HEAD":
                data = resp.read()
                req.send_header("Content-Length", str(len(data)))
                req.end_headers()
                req.wfile.write(data)
                return
            req.end_headers()
            if req.command == "HEAD":
                return
            total, sent = int(body_length or 0), 0
            first = True
            while chunk := resp.read(256 << 10):
                if fault == "corrupt" and first:
                    chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                first = False
                if fault == "stall-body" and sent + len(chunk) > total // 2:
                    req.wfile.flush()
                    time.sleep(self.stall_seconds)
                    reset(req)
                    return
                if fault == "truncate" and sent + len(chunk) > total // 2:
                    # Half the body, then an orderly close: the client surely reads the half.
                    req.wfile.write(chunk[: max(0, total // 2 - sent)])
                    req.wfile.flush()
                    req.close_connection = True
                    req.connection.shutdown(socket.SHUT_WR)
                    return
                if fault == "reset" and sent + len(chunk) > total // 2:
                    req.wfile.write(chunk[: max(0, total // 2 - sent)])
                    req.wfile.flush()
                    reset(req)
                    return
                req.wfile.write(chunk)
                sent += len(chunk)
        finally:
            upstream.close()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def drop_body(req: BaseHTTPRequestHandler, length: int) -> None:
    while length > 0:
        data = req.rfile.read(min(length, 1 << 20))
        if not data:
            break
        length -= len(data)


def reset(req: BaseHTTPRequestHandler) -> None:
    """Close the client's connection with a TCP RST, as a dropped link looks."""
    req.close_connection = True
    sock = req.connection
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
