"""python -m sam_convex.serve: start the page on a local web server (uvicorn).

    python -m sam_convex.serve                       # GrabCut (or SAM if checkpoints/ has one)
    python -m sam_convex.serve --model sam2 --checkpoint checkpoints/sam2.1_hiera_tiny.pt

Binds 127.0.0.1 by default: the page is for the person at this machine. Bad arguments
(an unknown model, a missing checkpoint, a port in use) exit with code 2 and one line.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from sam_convex import validation
from sam_convex.segmenters import SEGMENTERS, choose_segmenter
from sam_convex.serve.engine import GRABCUT_MAX_SIDE, Engine


def build_parser() -> validation.CommandLineParser:
    parser = validation.CommandLineParser(
        prog="python -m sam_convex.serve",
        description="Serve a page to try the convex projection: click on an image, see the segmenter's mask and "
        "its convex projection, download them.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    parser.add_argument(
        "--model",
        choices=SEGMENTERS,
        help="default: SAM if a SAM checkpoint is given or found in checkpoints/, else GrabCut (not SAM); "
        "sam2 and promptnet need --checkpoint",
    )
    parser.add_argument("--checkpoint", type=Path, metavar="PATH", help="SAM (.pth) or SAM 2 (.pt) checkpoint")
    parser.add_argument("--config", metavar="NAME", help="SAM 2 config (default: inferred from the checkpoint)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument(
        "--grabcut-side",
        type=int,
        default=GRABCUT_MAX_SIDE,
        metavar="PX",
        help="GrabCut segments a copy of the image with this longer side, so a click answers within a second "
        "(default: %(default)s; 0: full resolution)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        validation.integer("--port", args.port, minimum=1, maximum=65535)
        validation.integer("--grabcut-side", args.grabcut_side, minimum=0)
        if args.grabcut_side and args.grabcut_side < 8:
            raise ValueError(f"--grabcut-side must be 0 or at least 8, got {args.grabcut_side}")
        check_port(args.host, args.port)
        segmenter = choose_segmenter(args.model, args.checkpoint, args.config, device=args.device)
    except (OSError, ValueError) as err:
        parser.fail(err)
    import uvicorn

    from sam_convex.serve.app import create_app

    print(f"model: {segmenter.description}")
    app = create_app(Engine(segmenter, grabcut_max_side=args.grabcut_side or None))
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


def check_port(host: str, port: int) -> None:
    """ValueError unless (host, port) can be bound now (a clear line instead of uvicorn's
    log after the model has loaded)."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as err:
        raise ValueError(f"cannot listen on {host}:{port} ({err.strerror or err}); try another --port") from None


if __name__ == "__main__":
    sys.exit(main())
