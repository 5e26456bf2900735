"""A token server for a test registry's ``auth: token``, as Docker's token spec describes.

    with TokenServer(Path(tmp), users={"alice": "secret"}) as tokens:
        ...  # registry config: realm=tokens.realm, service=tokens.service,
             # issuer=tokens.issuer, rootcertbundle=tokens.certificate

It signs JWTs with an EC key whose self-signed certificate is both the
registry's root bundle and the token's ``x5c`` header: distribution 2.8
trusts a token whose x5c chain leads to a certificate of its bundle. A GET
with right Basic credentials (or a POST of a refresh token it issued) gets
every action it asks for; an anonymous one gets the actions in
``anonymous``; wrong credentials get a 401.
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

TOKEN_LIFETIME = 300


def _certificate(key: ec.EllipticCurvePrivateKey, name: str) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


class TokenServer:
    def __init__(
        self,
        directory: Path,
        users: Mapping[str, str],
        anonymous: tuple[str, ...] = (),
        service: str = "pouch-test-registry",
        issuer: str = "pouch-test-issuer",
    ) -> None:
        self.users = dict(users)
        self.anonymous = anonymous
        self.service = service
        self.issuer = issuer
        self.certificate = directory / "token-ca.pem"
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> user
        self.requests: list[dict[str, Any]] = []  # what each token request asked for
        self._key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(self._key, issuer)
        self.certificate.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self._x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def __enter__(self) -> TokenServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def refresh_token_for(self, user: str) -> str:
        """A refresh token (Docker's identity token) standing for `user`."""
        token = secrets.token_urlsafe(16)
        self.refresh_tokens[token] = user
        return token

    def issue(self, user: str, scopes: list[str], everything: bool = True) -> str:
        """A signed token granting `scopes` (all their actions, or the anonymous ones)."""
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = [action for action in actions.split(",") if action]
            granted = wanted if everything else [a for a in wanted if a in self.anonymous]
            access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": user, "aud": self.service, "exp": now + TOKEN_LIFETIME,
                  "nbf": now - 5, "iat": now, "jti": secrets.token_hex(8), "access": access}
        return jwt.encode(claims, self._key, algorithm="ES256", headers={"x5c": self._x5c})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                scopes = [part for value in query.get("scope", []) for part in value.split()]
                user = self._basic_user()
                server.requests.append({"method": "GET", "user": user, "scopes": scopes})
                if user is None:
                    self._answer(401, {"details": "incorrect username or password"})
                    return
                self._grant(user, scopes, everything=bool(user))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = parse_qs(self.rfile.read(length).decode())
                scopes = [part for value in form.get("scope", []) for part in value.split()]
                grant = form.get("grant_type", [""])[0]
                server.requests.append({"method": "POST", "grant": grant, "scopes": scopes})
                user = None
                if grant == "refresh_token":
                    user = server.refresh_tokens.get(form.get("refresh_token", [""])[0])
                elif grant == "password":
                    name, password = form.get("username", [""])[0], form.get("password", [""])[0]
                    user = name if server.users.get(name) == password else None
                if user is None:
                    self._answer(401, {"details": "invalid grant"})
                    return
                self._grant(user, scopes, everything=True)

            def _basic_user(self) -> str | None:
                """The user named by right Basic credentials, "" without any, None if wrong."""
                header = self.headers.get("Authorization", "")
                if not header.lower().startswith("basic "):
                    return ""
                name, _, password = base64.b64decode(header[6:]).decode().partition(":")
                return name if server.users.get(name) == password else None

            def _grant(self, user: str, scopes: list[str], everything: bool) -> None:
                token = server.issue(user, scopes, everything)
                self._answer(200, {"token": token, "access_token": token,
                                   "expires_in": TOKEN_LIFETIME})

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
