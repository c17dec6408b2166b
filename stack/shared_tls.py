"""One verified TLS context per CA file and thread for Prefect's API clients, the main thread's
built before the warm launcher forks (stack/launcher.py), so every run it forks starts with it.

Prefect builds a new `ssl.create_default_context(cafile=...)` for each PrefectClient, loading the
whole CA bundle (certifi's, about 25 ms of CPU here), whether the API URL is https or not, and a
flow run creates about a dozen clients (engine, log and event workers, pull step...): without the
cache, a third of a forked run's CPU.

Contract:
- Only the verified contexts Prefect asks for with a CA file are shared: same purpose, same file,
  same file version (path, size and modification time), same thread, same context. Anything else
  (no CA file, a capath or cadata, the unverified context of PREFECT_API_TLS_INSECURE_SKIP_VERIFY,
  which Prefect then changes) is built afresh by the ssl module.
- Per thread, because httpcore sets a context's ALPN protocols on every https connection, which
  must not race with another thread's handshake on the same context. Within a thread, clients
  connect one at a time.
- A certificate is verified against the same CA file as without the cache.
- It applies where `install()` puts it: Prefect's client module and its server version check, in
  the launcher and its forks. Cold runs and every other process build their contexts as Prefect
  does.
"""

from __future__ import annotations

import os
import ssl
import threading
import types


class SharedVerifiedContexts(types.ModuleType):
    """The ssl module, except that create_default_context(cafile=...) returns one shared context
    per CA file version and thread."""

    def __init__(self) -> None:
        super().__init__("ssl", ssl.__doc__)
        self._contexts: dict[tuple, ssl.SSLContext] = {}

    def __getattr__(self, name: str):
        return getattr(ssl, name)

    def create_default_context(
        self, purpose=ssl.Purpose.SERVER_AUTH, *, cafile=None, capath=None, cadata=None
    ) -> ssl.SSLContext:
        if cafile is None or capath is not None or cadata is not None:
            return ssl.create_default_context(purpose, cafile=cafile, capath=capath, cadata=cadata)
        version = os.stat(cafile)
        key = (
            threading.get_ident(),
            purpose,
            os.path.realpath(cafile),
            version.st_size,
            version.st_mtime_ns,
        )
        context = self._contexts.get(key)
        if context is None:
            context = self._contexts[key] = ssl.create_default_context(purpose, cafile=cafile)
        return context


def install() -> SharedVerifiedContexts:
    """Make Prefect's API clients and its server version check build their verified contexts
    through one shared cache, and build the calling thread's for the CA file this environment
    names now (as Prefect resolves it: PREFECT_API_SSL_CERT_FILE, which defaults to
    SSL_CERT_FILE, else certifi's bundle). A fork's main thread has the same ident, so it finds
    that context ready."""
    import certifi
    import prefect._internal.version_checking as version_checking
    import prefect.client.orchestration as client_module
    from prefect.settings import PREFECT_API_SSL_CERT_FILE

    shared = client_module.ssl
    if not isinstance(shared, SharedVerifiedContexts):
        shared = SharedVerifiedContexts()
    for module in (client_module, version_checking):
        module.ssl = shared
    shared.create_default_context(cafile=PREFECT_API_SSL_CERT_FILE.value() or certifi.where())
    return shared
