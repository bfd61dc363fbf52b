"""Requests that gunicorn refuses before the app sees them are answered in the API's JSON error
shape too, not with gunicorn's HTML pages."""

from __future__ import annotations

import json
import socket


def raw_request(base_url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), headers, body


#: What gunicorn refuses itself, and the status and error code it answers.
REFUSED = {
    "long request line": (b"GET /v1/events?q=" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                          414, "request_uri_too_long"),
    "oversized header": (b"GET /v1/events HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
                         431, "request_header_fields_too_large"),
    "control character": (b"GET /v1/events HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n", 400, "bad_request"),
    "NUL in a header": (b"GET /v1/events HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n", 400, "bad_request"),
    "not HTTP": (b"NOT HTTP AT ALL\r\n\r\n", 400, "bad_request"),
    "bad chunk size": (b"POST /v1/bookings HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                       400, "bad_request"),
}


def test_requests_gunicorn_refuses_are_answered_in_json(stack):
    for case, (request, status, code) in REFUSED.items():
        answered, headers, body = raw_request(stack.base_url, request)
        assert answered == status, case
        assert headers["content-type"] == "application/json", case
        assert int(headers["content-length"]) == len(body), case
        error = json.loads(body)["error"]
        assert error["code"] == code and error["message"], case
