#!/usr/bin/env python3
"""A client-credentials token endpoint for the OIDC test of the secured broker.

Usage: oidc-token-server.py PORT_FILE CLIENT_ID CLIENT_SECRET SUBJECT

Listens on 127.0.0.1 (a port the system picks, written to PORT_FILE) and answers
POST /token with an unsecured JWT (alg "none") for SUBJECT, which the broker's default
OAUTHBEARER validator accepts, when the request carries CLIENT_ID and CLIENT_SECRET
(HTTP Basic, as librdkafka sends them) and grant_type=client_credentials; 401 otherwise.
Each answered request is one line on stdout, without the credentials.
"""

import base64
import json
import os
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsecured_jwt(subject: str) -> str:
    now = int(time.time())
    header = b64url(json.dumps({"alg": "none"}).encode())
    claims = b64url(json.dumps({"sub": subject, "iat": now, "exp": now + 3600}).encode())
    return f"{header}.{claims}."


def main() -> None:
    port_file, client_id, client_secret, subject = sys.argv[1:5]
    expected = "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length", "0"))
            form = urllib.parse.parse_qs(self.rfile.read(length).decode())
            granted = (
                self.headers.get("Authorization") == expected
                and form.get("grant_type") == ["client_credentials"]
            )
            body = (
                json.dumps(
                    {"access_token": unsecured_jwt(subject), "token_type": "bearer", "expires_in": 3600}
                )
                if granted
                else json.dumps({"error": "invalid_client"})
            )
            self.send_response(200 if granted else 401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())
            print(f"token request: {'granted' if granted else 'refused'}", flush=True)

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    with open(port_file + ".tmp", "w") as out:
        out.write(str(server.server_address[1]))
    os.replace(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
