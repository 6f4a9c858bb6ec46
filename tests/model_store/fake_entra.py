"""A stand-in for Entra ID's token endpoint, for the fetch command's real credential.

azure-identity's WorkloadIdentityCredential is a ClientAssertionCredential whose assertion
is the file AZURE_FEDERATED_TOKEN_FILE names (the projected ServiceAccount token); it POSTs
`client_credentials` with that assertion to `<AZURE_AUTHORITY_HOST>/<tenant>/oauth2/v2.0/token`
(azure/identity/_internal/aad_client_base.py). This server answers that one request over
HTTPS on 127.0.0.1, only for the expected client id and assertion, with a token Azurite's
basic OAuth accepts, so `python -m scoring_app.model_store.fetch` runs unchanged.
"""
from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from tests.model_store.azurite import TENANT, Token

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class FakeEntra:
    def __init__(self, cert, key, client_id: str, assertion: str, fail_with: int | None = None):
        """`fail_with`: answer every request with this status (Entra in trouble)."""
        self.client_id, self.assertion, self.requests = client_id, assertion, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = parse_qs(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode())
                form = {k: v[0] for k, v in body.items()}
                outer.requests.append((self.path, form))
                ok = (self.path == f"/{TENANT}/oauth2/v2.0/token"
                      and form.get("grant_type") == "client_credentials"
                      and form.get("client_assertion_type") == JWT_BEARER
                      and form.get("client_id") == outer.client_id
                      and form.get("client_assertion") == outer.assertion
                      and "https://storage.azure.com/.default" in form.get("scope", ""))
                if fail_with:
                    status, doc = fail_with, {"error": "temporarily_unavailable",
                                              "error_description": "AADSTS90033: try again"}
                elif ok:
                    status, doc = 200, {"token_type": "Bearer", "expires_in": 3600,
                                        "access_token": Token().get_token().token}
                else:
                    status, doc = 400, {"error": "invalid_client",
                                        "error_description": "AADSTS700211: no matching federated identity record"}
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def authority(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "FakeEntra":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
