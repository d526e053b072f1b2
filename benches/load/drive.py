#!/usr/bin/env python3
"""Drives a server of `OPENSPOT_BENCH_SERVE` sequentially over one keep-alive
connection: `drive.py <serve file> openspot|bare <requests> [path]`, where path is
`id` (GET /v1/spotMembers/{id}, the default) or a path and query. For profiling
(callgrind instruction counts per request); not a load generator."""
import http.client, sys, urllib.parse

lines = open(sys.argv[1]).read().split("\n")
base = lines[0] if sys.argv[2] == "openspot" else lines[1]
key, ids = lines[2], [l for l in lines[3:] if l]
n = int(sys.argv[3])
what = sys.argv[4] if len(sys.argv) > 4 else "id"
u = urllib.parse.urlparse(base)
c = http.client.HTTPConnection(u.hostname, u.port)
for i in range(n):
    path = f"/v1/spotMembers/{ids[(i * 7) % len(ids)]}" if what == "id" else what
    c.request("GET", path, headers={"authorization": key})
    r = c.getresponse()
    body = r.read()
    if r.status != 200:
        sys.exit(f"HTTP {r.status}: {body[:200]!r}")
