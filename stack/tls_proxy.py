"""The HTTPS front of `make up`'s server for clients on other machines: it listens beyond loopback
with the server certificate (`make certs`) and hands each connection, decrypted, to the server on
loopback. It copies bytes and parses nothing, so HTTP and Prefect's websockets pass alike. A
client that does not speak TLS (plain HTTP) has its connection closed with nothing served.

    python -m stack.tls_proxy --listen HOST:PORT --to 127.0.0.1:4200 --cert FILE --key FILE

`make up` starts it when PREFECT_SERVER_API_HOST is not a loopback address (stack/local.py), and
`make down` stops it. TLS 1.2 at least; the certificate file holds the chain clients verify.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl
import sys
from pathlib import Path

CHUNK = 1 << 16
HANDSHAKE_TIMEOUT_S = 10.0


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Until `reader` ends; then end `writer`'s direction too (a TLS stream cannot half-close:
    it closes)."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, ssl.SSLError, OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()
            else:
                writer.close()


async def _relay(
    upstream: tuple[str, int],
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
) -> None:
    try:
        server_reader, server_writer = await asyncio.open_connection(*upstream)
    except OSError:
        client_writer.close()
        return
    try:
        await asyncio.gather(
            _copy(client_reader, server_writer), _copy(server_reader, client_writer)
        )
    finally:
        for writer in (server_writer, client_writer):
            writer.close()


def _quiet_handshake_failures(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """A client that is not TLS, or does not trust the certificate, is its own problem: one
    line, not a traceback."""
    error = context.get("exception")
    if isinstance(error, (ssl.SSLError, ConnectionError, TimeoutError)):
        print(f"tls-proxy: a connection failed: {error}", file=sys.stderr, flush=True)
        return
    loop.default_exception_handler(context)


async def serve(
    listen: tuple[str, int], upstream: tuple[str, int], context: ssl.SSLContext
) -> None:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_quiet_handshake_failures)
    server = await asyncio.start_server(
        lambda reader, writer: _relay(upstream, reader, writer),
        *listen,
        ssl=context,
        ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S,
    )
    stop = asyncio.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)
    print(
        f"tls-proxy: https://{listen[0]}:{listen[1]} -> http://{upstream[0]}:{upstream[1]}",
        flush=True,
    )
    async with server:
        await stop.wait()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"HOST:PORT, not {text!r}")
    return host.strip("[]"), int(port)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack.tls_proxy", description=__doc__)
    parser.add_argument("--listen", type=_address, required=True, metavar="HOST:PORT")
    parser.add_argument("--to", type=_address, required=True, metavar="HOST:PORT")
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        context = tls_context(args.cert, args.key)
    except (OSError, ssl.SSLError) as exc:
        print(f"tls-proxy: cannot load {args.cert} and {args.key}: {exc}", file=sys.stderr)
        return 1
    try:
        asyncio.run(serve(args.listen, args.to, context))
    except OSError as exc:
        where = f"{args.listen[0]}:{args.listen[1]}"
        print(f"tls-proxy: cannot listen on {where}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
