"""Real receivers for notification tests: an HTTP server taking webhook POSTs and an SMTP
server (aiosmtpd) taking e-mails, each in a thread of the test process."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
import queue
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.server.conftest import free_port


@dataclass
class WebhookReceiver:
    """Records every POST as ``(path, headers, JSON body)``; answers ``statuses`` in turn
    (then 200)."""

    url: str
    posts: queue.Queue = field(default_factory=queue.Queue)
    statuses: list[int] = field(default_factory=list)

    async def next_post(self, timeout: float = 30.0) -> tuple[str, dict, dict]:
        """The next POST received, waited for without blocking the test's event loop."""
        try:
            return await asyncio.to_thread(self.posts.get, True, timeout)
        except queue.Empty:
            raise AssertionError(f"the webhook got no POST within {timeout} s") from None


@contextlib.contextmanager
def webhook_receiver(path: str = "/hook"):
    receiver: WebhookReceiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802  (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status = receiver.statuses.pop(0) if receiver.statuses else 200
            self.send_response(status)
            self.end_headers()
            receiver.posts.put((self.path, dict(self.headers), json.loads(body)))

        def log_message(self, *args):  # keep the test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver = WebhookReceiver(f"http://127.0.0.1:{server.server_address[1]}{path}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class SmtpReceiver:
    """Records each e-mail; logins succeed only with ``password``, and never in the first
    ``refuse_sessions`` connections (smtplib tries each AUTH mechanism in turn, so refusing
    a connection's first attempt alone would not make its login fail)."""

    host: str
    port: int
    username: str
    password: str
    refuse_sessions: int = 0
    messages: queue.Queue = field(default_factory=queue.Queue)
    logins: list[str] = field(default_factory=list)
    sessions: list = field(default_factory=list)

    async def next_message(self, timeout: float = 30.0) -> email.message.EmailMessage:
        try:
            raw = await asyncio.to_thread(self.messages.get, True, timeout)
        except queue.Empty:
            raise AssertionError(f"the SMTP server got no e-mail within {timeout} s") from None
        return email.message_from_bytes(raw, policy=email.policy.default)

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        self.logins.append(auth_data.login.decode())
        if not any(seen is session for seen in self.sessions):
            self.sessions.append(session)  # kept alive, so "is" never matches a reused id
        if any(seen is session for seen in self.sessions[:self.refuse_sessions]):
            return AuthResult(success=False, handled=False)
        ok = auth_data.login.decode() == self.username and auth_data.password.decode() == self.password
        return AuthResult(success=ok, handled=False)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802  (aiosmtpd's naming)
        self.messages.put(envelope.original_content or envelope.content)
        return "250 OK"


@contextlib.contextmanager
def smtp_receiver(username: str = "flow-bot", password: str = "smtp-pw-Zq81x", refuse_sessions: int = 0):
    receiver = SmtpReceiver("127.0.0.1", free_port(), username, password, refuse_sessions)
    # Plain-text AUTH without TLS: a test-only receiver on the loopback interface. AUTH is
    # offered, not required; the tests check who logged in (``logins``).
    controller = Controller(receiver, hostname=receiver.host, port=receiver.port,
                            authenticator=receiver.authenticate, auth_require_tls=False)
    controller.start()
    try:
        yield receiver
    finally:
        controller.stop()
