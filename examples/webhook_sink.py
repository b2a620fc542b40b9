"""A tiny webhook receiver for the example: prints each notification incidentd sends.

    python3 examples/webhook_sink.py [PORT]      # default 9099
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.end_headers()
        try:
            note = json.loads(body)
        except ValueError:
            return
        inc = note.get("incident", {})
        print(f"[{self.path.strip('/')}] {note.get('reason', '?')}: {inc.get('id')} {inc.get('priority')} "
              f"{inc.get('title')} (root cause {inc.get('root_cause')})", flush=True)

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9099
    HTTPServer(("127.0.0.1", port), Sink).serve_forever()
