"""The compose example's web service: answers with whether it reaches the other services by
their compose names, as they would on compose's own network."""

import os
import socket
from http.server import BaseHTTPRequestHandler, HTTPServer


def reachable(host: str, port: int) -> str:
    try:
        with socket.create_connection((host, port), timeout=2):
            return "reachable"
    except OSError as e:
        return f"unreachable ({e})"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = (
            f"shop: db {reachable('db', 5432)}, cache {reachable('cache', 6379)}\n"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


HTTPServer(("", int(os.environ.get("PORT", "3000"))), Handler).serve_forever()
