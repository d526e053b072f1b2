"""Verifies captured webhook deliveries with the PyPI `standardwebhooks` package (a
third-party implementation of the Standard Webhooks / Svix signature scheme).

argv[1]: the endpoint's secret (`whsec_...`). stdin: a JSON list of
`{"headers": {name: value}, "body_b64": "..."}`. Each delivery is verified twice: with
its `webhook-*` headers, and with its `svix-*` values under the `webhook-*` names.
Prints the number of deliveries verified; exits 1 naming the first failure.
"""

import base64
import json
import sys

from standardwebhooks.webhooks import Webhook


def main() -> int:
    webhook = Webhook(sys.argv[1])
    deliveries = json.load(sys.stdin)
    for i, d in enumerate(deliveries):
        headers = {k.lower(): v for k, v in d["headers"].items()}
        body = base64.b64decode(d["body_b64"])
        for prefix in ("webhook", "svix"):
            as_standard = {
                "webhook-id": headers.get(prefix + "-id", ""),
                "webhook-timestamp": headers.get(prefix + "-timestamp", ""),
                "webhook-signature": headers.get(prefix + "-signature", ""),
            }
            try:
                webhook.verify(body, as_standard)
            except Exception as e:  # noqa: BLE001 - report any failure with its index
                print(f"delivery {i} ({prefix}-* headers): {type(e).__name__}: {e}", file=sys.stderr)
                return 1
    print(len(deliveries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
