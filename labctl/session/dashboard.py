"""The proctor's dashboard: server-rendered HTML on 127.0.0.1 only, behind a proctor password
(HTTP Basic), refreshing itself; a background loop grades each candidate at their end time.

Standard library only (http.server): nothing to build, nothing listening beyond loopback.
"""

from __future__ import annotations

import base64
import hmac
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from labctl.session.model import load_session

REFRESH_S = 10


def page(session_name: str, refresh: int = REFRESH_S) -> str:
    """The dashboard page for the session as now on disk."""
    from labctl.session import clock, reports, room

    session = load_session(session_name)
    rows = room.status(session)
    return reports.render("dashboard.html.j2", session=session, rows=rows, refresh=refresh, now=clock.stamp(),
                          scenario=session.scenario.rstrip("/").rsplit("/", 1)[-1])


def candidate_page(session_name: str, candidate: str) -> str:
    """One candidate's latest report, in French."""
    from labctl.session import reports, room

    session = load_session(session_name)
    record = session.candidate(candidate)
    store = room.results_store(session)
    try:
        run = store.latest(session.name, record.id)
    finally:
        store.close()
    return reports.to_html(reports.session_document(session, {record.id: run}, "fr", [record.id]))


class Dashboard(ThreadingHTTPServer):
    """The HTTP server, with the session name and the proctor password."""

    daemon_threads = True

    def __init__(self, session_name: str, password: str, port: int, refresh: int = REFRESH_S) -> None:
        self.session_name = session_name
        self.password = password
        self.refresh = refresh
        super().__init__(("127.0.0.1", port), Handler)


class Handler(BaseHTTPRequestHandler):
    """GET / (the room), GET /candidate/ID (a candidate's report); everything behind Basic auth."""

    server: Dashboard

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the proctor's terminal shows the tick loop, not every request."""

    def _authorised(self) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            _, _, given = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return hmac.compare_digest(given.encode(), self.server.password.encode())

    def _send(self, status: HTTPStatus, body: str, extra: dict[str, str] | None = None) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        """Serve a page."""
        from labctl.errors import LabctlError

        if not self._authorised():
            self._send(HTTPStatus.UNAUTHORIZED, '<!doctype html><html lang="fr"><title>Accès refusé</title>'
                       "<p>Mot de passe du surveillant requis.</p></html>",
                       {"WWW-Authenticate": 'Basic realm="labctl proctor", charset="UTF-8"'})
            return
        try:
            if self.path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, page(self.server.session_name, self.server.refresh))
            elif self.path.startswith("/candidate/"):
                self._send(HTTPStatus.OK, candidate_page(self.server.session_name, self.path.split("/", 2)[2]))
            else:
                self._send(HTTPStatus.NOT_FOUND, '<!doctype html><html lang="fr"><title>Introuvable</title></html>')
        except LabctlError as exc:
            import html

            self._send(HTTPStatus.NOT_FOUND,
                       f'<!doctype html><html lang="fr"><title>Erreur</title><p>{html.escape(exc.message)}</p>')


def tick_loop(session_name: str, stop: threading.Event, every: float = 5.0, report: Any = None) -> None:
    """Grade and close each candidate at their end time until `stop` is set."""
    from labctl.session import room

    while not stop.is_set():
        try:
            closed = room.tick(load_session(session_name))
            if closed and report:
                report(f"end of time: graded and closed {', '.join(closed)}")
        except Exception as exc:  # the loop must survive a bad moment; it says what happened
            if report:
                report(f"tick failed: {type(exc).__name__}: {exc}")
        stop.wait(every)


def serve(session_name: str, password: str, port: int, *, auto_grade: bool = True, report: Any = None,
          ready: Any = None) -> None:
    """Serve until interrupted (Ctrl-C)."""
    load_session(session_name)
    server = Dashboard(session_name, password, port)
    stop = threading.Event()
    ticker = threading.Thread(target=tick_loop, args=(session_name, stop, 5.0, report), daemon=True)
    if auto_grade:
        ticker.start()
    if ready:
        ready(server.server_address[1])
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        stop.set()
        server.server_close()
        if auto_grade:
            ticker.join(timeout=30)
