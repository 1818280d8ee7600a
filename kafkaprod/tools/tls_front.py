"""A TLS front for a local broker: Debian's stunnel4 accepting TLS and passing plaintext to the broker.

Tansu's own TLS options do not work (its command line refuses ``--cert`` with ``--key``), so the tests and the
TLS benchmark put stunnel in front of it, with the broker advertising stunnel's port so that every connection
a client makes goes through TLS. ``client_ca_file`` makes stunnel demand a client certificate signed by that
CA (mutual TLS). :func:`make_certificates` writes a throwaway CA and a broker certificate for 127.0.0.1 and
localhost with ``trustme`` (in the test and bench extras). The process is killed by :meth:`Stunnel.stop`.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["Stunnel", "make_certificates", "stunnel_binary"]

_LOOPBACK = "127.0.0.1"


def stunnel_binary() -> str:
    """The stunnel4 executable; RuntimeError naming the package when it is not installed."""
    for name in ("stunnel4", "stunnel"):
        path = shutil.which(name) or next((p for p in (f"/usr/bin/{name}", f"/usr/sbin/{name}")
                                           if os.access(p, os.X_OK)), None)
        if path:
            return path
    raise RuntimeError("stunnel4 is not installed: `apt-get install stunnel4` (ci/test.sh installs it)")


def make_certificates(directory: Path) -> tuple[Path, Path]:
    """A new CA and a broker certificate for 127.0.0.1/localhost in ``directory``: (ca.pem, server.pem with the
    key and chain)."""
    import trustme

    ca = trustme.CA()
    ca_file, server_file = directory / "ca.pem", directory / "server.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    ca.issue_cert(_LOOPBACK, "localhost").private_key_and_cert_chain_pem.write_to_path(str(server_file))
    return ca_file, server_file


class Stunnel:
    """stunnel4 on ``port`` (TLS) relaying to ``backend_port`` (plaintext), both on 127.0.0.1."""

    def __init__(self, workdir: Path, port: int, backend_port: int, cert_file: Path,
                 client_ca_file: Path | None = None, startup_timeout: float = 30.0) -> None:
        self.port = port
        self.log = workdir / f"stunnel-{port}.log"
        conf = workdir / f"stunnel-{port}.conf"
        lines = ["foreground = yes", "pid =", f"output = {self.log}", "debug = 4", "[kafka]",
                 f"accept = {_LOOPBACK}:{port}", f"connect = {_LOOPBACK}:{backend_port}", f"cert = {cert_file}"]
        if client_ca_file is not None:
            lines += ["verify = 2", f"CAfile = {client_ca_file}"]
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen([stunnel_binary(), str(conf)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            self._await_listening(startup_timeout)
        except BaseException:
            self.stop()
            raise

    def _await_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                text = self.log.read_text(errors="replace") if self.log.exists() else ""
                raise RuntimeError(f"stunnel exited with code {self.proc.returncode}:\n{text[-3000:]}")
            try:
                with socket.create_connection((_LOOPBACK, self.port), timeout=1.0):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"stunnel did not listen on port {self.port} within {timeout} s") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def __enter__(self) -> Stunnel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
