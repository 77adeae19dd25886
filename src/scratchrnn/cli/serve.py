"""``scratchrnn serve``: its parser and the command.

Serves one run (the one named on the command line; no request names a path) on uvicorn: OpenAI's
completions API under ``/v1``, its documentation at ``/docs``, the explorer page at ``/``. Binds the
loopback interface unless ``--host`` says otherwise, and says so when it does. Ctrl-C stops it (uvicorn's
own handling: open connections get a few seconds to finish), with one line and no traceback.
"""
from __future__ import annotations

import ipaddress
import os
import socket
import sys

from ..backends import BACKENDS
from ..errors import UserError
from .common import HelpFormatter, checked, positive_int, thread_count

port_number = checked(int, lambda v: 0 <= v <= 65535, "a port number in [0, 65535]")
GRACEFUL_SECONDS = 3        # what open connections get to finish once Ctrl-C has been pressed


def add_parser(sub) -> None:
    from ..serving.batcher import Limits

    s = sub.add_parser(
        "serve", formatter_class=HelpFormatter,
        help="serve a trained run over HTTP: OpenAI-compatible completions and the explorer page",
        description="Serve a run directory's model: POST /v1/completions and GET /v1/models as OpenAI's API "
                    "has them (a token is a character; the openai client and curl work unchanged; docs at "
                    "/docs), and at / the explorer page, which generates and shows what the model computes "
                    "(surprise, hidden units, saliency, gate saturation, training curves). Requests that "
                    "arrive together are decoded together, one batched step for all. Needs the serve extra: "
                    "pip install '.[serve]' in a clone.")
    s.add_argument("run_dir", metavar="RUN_DIR",
                   help="a run directory (its best/ or last/, see --which), or a checkpoint directory")
    s.add_argument("--which", choices=("best", "last"), default="best",
                   help="in a run directory: the best epoch's weights or the newest")
    s.add_argument("--host", default="127.0.0.1",
                   help="the address to listen on; anything but a loopback address lets other machines in")
    s.add_argument("--port", type=port_number, default=8000, help="the port to listen on (0: any free port)")
    s.add_argument("--backend", choices=BACKENDS, default="numpy", help="framework that runs the model")
    s.add_argument("--max-streams", type=positive_int, default=Limits.max_streams, metavar="N",
                   help="continuations decoded at once over all requests; a request beyond them gets 429")
    s.add_argument("--max-tokens", type=positive_int, default=Limits.max_tokens, metavar="N",
                   help="the most characters one continuation may ask for")
    s.add_argument("--threads", type=thread_count, default=1, metavar="T",
                   help="threads of the batched step (the BLAS library's, the compiled kernels', PyTorch's): each "
                        "step is small, and the connections need a core of their own")
    s.add_argument("--access-log", action="store_true", help="log every request on stderr")


def _listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, or a one-line UserError saying why not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as err:
        raise UserError(f"--host {host}: cannot resolve it ({err.strerror})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as err:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({err.strerror or err})") from None
    return sock


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def run(args) -> int:
    from ..serving import require_extra

    require_extra()
    import uvicorn
    from threadpoolctl import threadpool_limits

    from ..serving.app import create_app
    from ..serving.batcher import Limits
    from ..serving.served import ServedRun

    served = ServedRun.load(args.run_dir, args.which, args.backend)
    limits = Limits(max_streams=args.max_streams, max_tokens=args.max_tokens)
    sock = _listening_socket(args.host, args.port)
    address, port = sock.getsockname()[:2]
    if not _is_loopback(address):
        print(f"scratchrnn: warning: listening on {address}, not a loopback address: other machines can reach "
              f"this server, which has no authentication", file=sys.stderr)
    shown = f"[{address}]" if ":" in address else address
    print(f"scratchrnn: serving {served.model_id} ({served.checkpoint.path}) at http://{shown}:{port}/ "
          f"(API: /v1, docs: /docs); Ctrl-C stops", flush=True)
    config = uvicorn.Config(create_app(served, limits), log_level="warning", access_log=args.access_log,
                            timeout_graceful_shutdown=GRACEFUL_SECONDS)
    # a step multiplies a few rows by the weights: spread over threads that wait for cores which the
    # connections also need, it takes several times longer than on one (the server is this process)
    os.environ["SCRATCHRNN_THREADS"] = str(args.threads)
    if "torch" in sys.modules:              # the torch backend: its own pool of threads, told likewise
        sys.modules["torch"].set_num_threads(args.threads)
    try:
        with threadpool_limits(args.threads, user_api="blas"):
            uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass                # uvicorn has shut down, then raised the Ctrl-C again for us
    finally:
        sock.close()
    print("scratchrnn: server stopped", file=sys.stderr)
    return 0
