#!/usr/bin/python3
"""A loopback OTLP/HTTP receiver for tests/scripts/exporter.sh.

Binds 127.0.0.1 on a free port, writes the port to PORT_FILE, and appends
one JSON line per request to LOG_FILE: method, path, Content-Type, the
request headers and the body (parsed as JSON when it is). Answers 200 with
"{}". With --hang it answers nothing for 60 seconds (a stuck collector).
Stops on SIGTERM or after --lifetime seconds.
"""
import argparse
import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port_file")
    ap.add_argument("log_file")
    ap.add_argument("--hang", action="store_true")
    ap.add_argument("--lifetime", type=float, default=300)
    args = ap.parse_args()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(n)
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
            rec = {"method": "POST", "path": self.path,
                   "content_type": self.headers.get("Content-Type"),
                   "headers": {k.lower(): v for k, v in self.headers.items()},
                   "body": body}
            with lock, open(args.log_file, "a") as f:
                f.write(json.dumps(rec) + "\n")
            if args.hang:
                time.sleep(60)
                return
            out = b"{}"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(args.port_file + ".tmp", args.port_file)
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    timer = threading.Timer(args.lifetime, lambda: os._exit(0))
    timer.daemon = True
    timer.start()
    srv.serve_forever()


if __name__ == "__main__":
    main()
