"""docs/deploy/Caddyfile and docs/deploy/nginx.conf: the webhook endpoints, and only them, on HTTPS.

The live tests run each file through the real server (`apt-get install caddy nginx-light`) over TLS on
loopback, in front of a small upstream that records what reaches it; each is skipped where its server
is not installed.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.helpers import REPO

CADDYFILE = REPO / "docs" / "deploy" / "Caddyfile"
NGINX_CONF = REPO / "docs" / "deploy" / "nginx.conf"

FORWARDED = [
    ("POST", "/zoho-books/webhooks/invoices"),
    ("POST", "/zoho-books/webhooks/payments"),
    ("POST", "/whatsapp/webhook"),
    ("GET", "/whatsapp/webhook?hub.mode=subscribe&hub.verify_token=t&hub.challenge=42"),
]
REFUSED = [
    ("GET", "/"),
    ("GET", "/auth/login"),
    ("GET", "/api/v2/dags"),
    ("POST", "/api/v2/connections"),
    ("PATCH", "/api/v2/connections/zoho_books_default"),
    ("POST", "/execution/task-instances/x/run"),
    ("GET", "/zoho-books/webhooks/invoices"),  # Zoho POSTs; a GET is nobody's
    ("PUT", "/zoho-books/webhooks/invoices"),
    ("POST", "/zoho-books/webhooks/../../api/v2/dags"),
    ("POST", "/zoho-books/webhooks/invoices/../../../api/v2/dags"),
    ("POST", "/zoho-books/webhooks/%2e%2e/%2e%2e/api/v2/dags"),
    ("POST", "/zoho-books/webhooks/invoices/extra"),
    ("POST", "/zoho-books/webhooks/"),
    ("POST", "/whatsapp/webhook/../../api/v2/dags"),
    ("DELETE", "/whatsapp/webhook"),
]
# Either refused, or what reaches Airflow is one of the webhook paths, normalised (never the raw text).
TRICKY = [
    ("POST", "/api/v2/../../zoho-books/webhooks/invoices"),
    ("POST", "/zoho-books/webhooks/x/../invoices"),
    ("POST", "/zoho-books//webhooks/invoices"),
    ("POST", "/zoho-books/webhooks/invoices?x=1"),
    ("GET", "/whatsapp/./webhook"),
    ("POST", "/whatsapp/webhook/."),
]
WEBHOOK_PATHS = {"/zoho-books/webhooks/invoices", "/zoho-books/webhooks/payments", "/whatsapp/webhook"}


def handle_blocks(text: str) -> list[tuple[str, str]]:
    """(matcher, body) of each top-level `handle` block of the site, by brace counting."""
    blocks = []
    lines = [line.split("#", 1)[0].rstrip() for line in text.splitlines()]
    i = 0
    while i < len(lines):
        words = lines[i].split()
        if words[:1] == ["handle"]:
            matcher = words[1] if len(words) > 2 else ""
            depth, body = 0, []
            while True:
                depth += lines[i].count("{") - lines[i].count("}")
                body.append(lines[i])
                if depth == 0:
                    break
                i += 1
            blocks.append((matcher, "\n".join(body)))
        i += 1
    return blocks


def test_only_the_webhook_matchers_reach_airflow() -> None:
    text = CADDYFILE.read_text()
    blocks = handle_blocks(text)
    assert [m for m, _ in blocks] == ["@zoho_books", "@whatsapp", ""]
    assert all("reverse_proxy" in body for m, body in blocks if m)
    assert all("rewrite * /" in body for m, body in blocks if m)  # forwards the path it matched, cleaned
    assert 'respond "Not Found" 404' in blocks[-1][1] and "reverse_proxy" not in blocks[-1][1]
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    assert code.count("reverse_proxy") == 2  # nothing outside the two handles
    assert "path_regexp event ^/zoho-books/webhooks/([a-z_]+)$" in code
    assert "path /whatsapp/webhook\n" in code


def test_nginx_example_forwards_only_the_webhook_locations() -> None:
    code = "\n".join(line.split("#", 1)[0] for line in NGINX_CONF.read_text().splitlines())
    locations = re.findall(r"location\s+([^{]+?)\s*\{(.*?)\n    \}", code, re.S)
    proxied = {where.strip() for where, body in locations if "proxy_pass" in body}
    assert proxied == {"~ ^/zoho-books/webhooks/[a-z_]+$", "= /whatsapp/webhook"}
    assert code.count("proxy_pass") == 2
    assert all("$uri" in line for line in code.splitlines() if "proxy_pass" in line)  # the normalised path
    assert "access_log off;" in code and "server 127.0.0.1:8080;" in code


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def upstream() -> Iterator[tuple[int, list[tuple[str, str]]]]:
    """Stands in for the API server: answers 200 to anything and records (method, path)."""
    seen: list[tuple[str, str]] = []

    class Upstream(http.server.BaseHTTPRequestHandler):
        def answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append((self.command, self.path))
            body = b"upstream"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


def start_caddy(binary: str, port: int, up_port: int, tmp_path: Path) -> list[str]:
    """docs/deploy/Caddyfile as written, adapted to JSON and run on loopback: no admin endpoint, no
    port-80 redirect, Caddy's own CA for 127.0.0.1 (not installed in the system's trust store)."""
    env = {**os.environ, "WEBHOOK_DOMAIN": f"https://127.0.0.1:{port}", "AIRFLOW_UPSTREAM": f"127.0.0.1:{up_port}",
           "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    adapted = subprocess.run([binary, "adapt", "--config", str(CADDYFILE), "--adapter", "caddyfile"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert adapted.returncode == 0, adapted.stderr
    config = json.loads(adapted.stdout)
    config["admin"] = {"disabled": True}
    (server,) = config["apps"]["http"]["servers"].values()
    server["listen"] = [f"127.0.0.1:{port}"]
    server["automatic_https"] = {"disable_redirects": True}
    config["apps"]["pki"] = {"certificate_authorities": {"local": {"install_trust": False}}}
    (tmp_path / "caddy.json").write_text(json.dumps(config))
    return [binary, "run", "--config", str(tmp_path / "caddy.json")]


def start_nginx(binary: str, port: int, up_port: int, tmp_path: Path) -> list[str]:
    """docs/deploy/nginx.conf with the test's ports and a throw-away self-signed certificate."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hooks.example.in")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    site = NGINX_CONF.read_text()
    for old, new in [("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;"), ("listen [::]:443 ssl;", ""),
                     ("listen 80;", f"listen 127.0.0.1:{free_port()};"), ("listen [::]:80;", ""),
                     ("server 127.0.0.1:8080;", f"server 127.0.0.1:{up_port};"),
                     ("/etc/letsencrypt/live/hooks.example.in/fullchain.pem", str(tmp_path / "cert.pem")),
                     ("/etc/letsencrypt/live/hooks.example.in/privkey.pem", str(tmp_path / "key.pem"))]:
        assert old in site, old
        site = site.replace(old, new)
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "logs").mkdir()
    (tmp_path / "main.conf").write_text(
        f"daemon off;\npid {tmp_path / 'nginx.pid'};\nerror_log {tmp_path / 'logs' / 'error.log'};\n"
        f"events {{}}\nhttp {{\n    include {tmp_path / 'site.conf'};\n}}\n")
    checked = subprocess.run([binary, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "main.conf")],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    return [binary, "-p", str(tmp_path), "-c", str(tmp_path / "main.conf")]


PROXIES = {"caddy": start_caddy, "nginx": start_nginx}


@pytest.mark.parametrize("proxy", sorted(PROXIES))
def test_the_proxy_forwards_the_webhook_paths_over_tls_and_nothing_else(proxy: str, upstream, tmp_path: Path) -> None:
    binary = shutil.which(proxy) or shutil.which(proxy, path="/usr/sbin:/sbin")
    if binary is None:
        pytest.skip(f"{proxy} is not installed (Debian: apt-get install {'nginx-light' if proxy == 'nginx' else proxy})")
    up_port, seen = upstream
    port = free_port()
    command = PROXIES[proxy](binary, port, up_port, tmp_path)
    log = (tmp_path / "proxy.log").open("w")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    tls = ssl.create_default_context()
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE  # a certificate made for this test

    def call(method: str, path: str) -> tuple[int, str]:
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=tls, timeout=10)
        try:
            conn.request(method, path, body=b"{}" if method != "GET" else None,
                         headers={"Content-Type": "application/json"})
            reply = conn.getresponse()
            return reply.status, reply.read().decode()
        finally:
            conn.close()

    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                call("GET", "/")
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "proxy.log").read_text()
                time.sleep(0.2)
        for method, path in REFUSED:
            assert call(method, path)[0] == 404, (method, path)
        assert seen == []
        for method, path in FORWARDED:
            assert call(method, path) == (200, "upstream"), (method, path)
        assert seen == FORWARDED
        seen.clear()
        for method, path in TRICKY:
            status = call(method, path)[0]
            assert status == 404 or (status == 200 and seen and seen[-1][1].split("?")[0] in WEBHOOK_PATHS), (
                method, path, status, seen[-1:])
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
