"""Start the Dash dashboard against a running backend (`pss serve`).

Example: pss ui --backend http://127.0.0.1:8000 --port 8050
"""

from __future__ import annotations

import logging


class UsageError(SystemExit):
    """A bad argument or a taken port: one line on stderr and a failed exit, never a traceback (the UI imports
    nothing from the backend, so it cannot use the shell's own error type)."""

    def __init__(self, message: str):
        super().__init__(f"error: {message}")


def add_arguments(parser) -> None:
    parser.add_argument("--backend", required=True, help="base URL of the backend, e.g. http://127.0.0.1:8000")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8050, help="port to listen on (default 8050)")
    parser.add_argument("--dev", action="store_true", help="Dash debug mode (error overlay, dev tools); never for shared use")


def check_port(host: str, port: int) -> None:
    """A taken port as one line (werkzeug would print its own message and exit)."""
    import socket

    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}; choose another with --port") from None


def quiet_request_logs() -> None:
    """One log line per HTTP request (the UI's and its calls to the backend) is noise outside debugging."""
    for name in ("werkzeug", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)


def run(args) -> int:
    from app.client import BackendClient, BackendError
    from app.main import create_dash_app

    if not args.backend.startswith(("http://", "https://")):
        raise UsageError(f"--backend must be an http(s) URL, got {args.backend!r}")
    if not (args.dev or getattr(args, "verbose", False)):
        quiet_request_logs()
    client = BackendClient(args.backend)
    try:
        client.health()
    except BackendError as exc:
        print(f"warning: {exc.message}; the dashboard will say so until the backend is up")
    app = create_dash_app(args.backend, client=client)
    if args.dev:
        app.run(host=args.host, port=args.port, debug=True, use_reloader=False)
        return 0
    from werkzeug.serving import make_server

    check_port(args.host, args.port)
    server = make_server(args.host, args.port, app.server, threaded=True)
    print(f"Dashboard: http://{args.host}:{args.port}/  (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
