"""`mvp health ADDR...`: waits until every gRPC server answers health SERVING (or fails).

For scripts and Kubernetes init containers: exit 0 when all are SERVING within --timeout-s,
1 otherwise, naming the address that was not.
"""

from __future__ import annotations

import argparse
import sys
import time


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("addresses", nargs="+", help="host:port of each gRPC server")
    parser.add_argument("--timeout-s", type=float, default=60.0, help="total time to wait for all of them")
    parser.add_argument("--service", default="", help="health service name to check ('' = the whole server)")
    parser.set_defaults(func=_health)


def _health(args: argparse.Namespace) -> int:
    import grpc

    from mvp.clients.channel import BaseClient, ServiceUnavailableError

    deadline = time.monotonic() + args.timeout_s
    for address in args.addresses:
        client = BaseClient(address)
        try:
            client.wait_healthy(timeout_s=max(0.1, deadline - time.monotonic()), service=args.service)
        except (ServiceUnavailableError, grpc.RpcError) as exc:
            print(f"mvp health: {address} is not serving: {exc}", file=sys.stderr)
            return 1
        finally:
            client.close()
        print(f"{address} SERVING")
    return 0
