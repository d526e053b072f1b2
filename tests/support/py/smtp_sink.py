"""A real SMTP server on loopback for openspot's email tests (aiosmtpd).

Usage: smtp_sink.py OUT_FILE
Prints `ready <port>` once it accepts connections, then appends one JSON line per
message to OUT_FILE: {mail_from, rcpt_tos, subject, from, to, message_id, text, html}
(parsed with the standard `email` package). A recipient whose address starts with
`reject` is refused with 550 (a permanent failure). Runs until stdin closes or it is
killed.
"""

import asyncio
import email
import email.policy
import json
import socket
import sys

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, path):
        self.path = path

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower().startswith("reject"):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        text = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "subject": str(msg["subject"] or ""),
            "from": str(msg["from"] or ""),
            "to": str(msg["to"] or ""),
            "message_id": str(msg["message-id"] or ""),
            "content_type": msg.get_content_type(),
            "text": text.get_content() if text is not None else None,
            "html": html.get_content() if html is not None else None,
        }
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        return "250 Message accepted for delivery"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    path = sys.argv[1]
    open(path, "a").close()
    controller = Controller(Sink(path), hostname="127.0.0.1", port=free_port())
    controller.start()
    print(f"ready {controller.port}", flush=True)
    try:
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
