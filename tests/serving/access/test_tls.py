"""HTTPS served by the service itself: a CA and a server certificate made here with openssl, the
real service on them (flags and environment, one and two workers), httpx verifying with the CA;
a client that does not trust the CA, and a plain-HTTP client, get nothing."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from serving.testing import SERVE, ServerProcess
from tests.support.server import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SERVER_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


@dataclass(frozen=True)
class Pki:
    ca: Path
    certificate: Path
    private_key: Path


def openssl(*args: str, cwd: Path) -> None:
    executable = shutil.which("openssl")
    if executable is None:  # requirements/debian-packages.txt: installed by make test
        raise RuntimeError("openssl not found: apt-get install openssl")
    subprocess.run([executable, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throw-away CA (EC P-256, one day) and a certificate it signs for 127.0.0.1."""
    directory = tmp_path_factory.mktemp("pki")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
        "-subj", "/CN=mnist-inference test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    openssl(
        "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1",
        cwd=directory,
    )  # fmt: skip
    (directory / "server.ext").write_text(SERVER_EXTENSIONS)
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "server.ext",
        cwd=directory,
    )  # fmt: skip
    return Pki(directory / "ca.pem", directory / "server.pem", directory / "server.key")


@pytest.fixture(scope="module", params=[1, 2], ids=["1-worker-flags", "2-workers-env"])
def https_server(
    request: pytest.FixtureRequest,
    pki: Pki,
    tiny_model_repository: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    """One worker configured by the CLI flags; two (the supervisor's SO_REUSEPORT workers, each
    its own uvicorn) by the environment."""
    workers: int = request.param
    env = {"SERVING_MODEL_REPOSITORY": str(tiny_model_repository), "SERVING_WORKERS": str(workers)}
    args: tuple[str, ...] = SERVE
    if workers == 1:
        args += ("--ssl-certfile", str(pki.certificate), "--ssl-keyfile", str(pki.private_key))
    else:
        env["SERVING_SSL_CERTFILE"] = str(pki.certificate)
        env["SERVING_SSL_KEYFILE"] = str(pki.private_key)
    log = tmp_path_factory.mktemp("https") / "server.log"
    with ServerProcess(log, args=args, env=env, cwd=REPO, ca_file=pki.ca) as server:
        yield server


def test_https_verified_with_the_test_ca(https_server: ServerProcess, pki: Pki) -> None:
    assert https_server.base_url.startswith("https://127.0.0.1:")
    trusting = ssl.create_default_context(cafile=pki.ca)
    with httpx.Client(base_url=https_server.base_url, verify=trusting, timeout=10) as client:
        assert client.get("/readyz").status_code == 200
        answer = client.post("/v1/predict", json={"instances": [[0.0] * 784]})
        assert answer.status_code == 200
        assert len(answer.json()["predictions"][0]["probabilities"]) == 10
        # The connection really is TLS, with the certificate made above.
        with client.stream("GET", "/healthz") as response:
            stream = response.extensions["network_stream"]
            assert stream.get_extra_info("ssl_object").version() in {"TLSv1.2", "TLSv1.3"}


def test_a_client_without_the_ca_is_refused(https_server: ServerProcess) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{https_server.base_url}/readyz", timeout=10)  # the system's CAs only


def test_plain_http_gets_no_answer(https_server: ServerProcess) -> None:
    plain = https_server.base_url.replace("https://", "http://")
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{plain}/readyz", timeout=10)
