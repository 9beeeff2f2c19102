"""A tiny web app: answers every GET with a greeting, the container's host name and its pid."""
import http.server
import os
import socket


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"{os.environ.get('GREETING', 'hello')} from {socket.gethostname()} (pid {os.getpid()})\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: object) -> None:
        print(f"{self.address_string()} {fmt % args}", flush=True)


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8000"))
    print(f"listening on port {port}", flush=True)
    http.server.ThreadingHTTPServer(("0.0.0.0", port), Hello).serve_forever()
