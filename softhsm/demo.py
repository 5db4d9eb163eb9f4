"""`make demo`: the whole login stack on this machine.

A test PKI with its CRL and OCSP servers, a SoftHSM demo token (one enterprise and one person
certificate) standing in for a USB key, demo accounts bound to those certificates, the gateway
(`certgate serve`), the local signing agent (`certgate agent serve`), and two example
applications signing in through the gateway (``examples/oidc_app``, OpenID Connect, and
``examples/cas_app``, CAS 3.0, registered with `certgate client add`), each in a child process.
It prints the URLs, the token PIN and a demo password, and runs until Ctrl-C or SIGTERM, when it
stops every child and waits for it.

The first run creates everything under ``.demo/`` in the working directory; later runs reuse it
(delete ``.demo/`` to start over). Logs of the children go to ``.demo/logs/``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from softhsm.kit import SOFTHSM_MODULE, SoftHsmKit
from softhsm.pki import CA_NAMES, TestPki
from softhsm.sm2_ukey import SM2_SM3_MECHANISM, Sm2UkeyDirectory

DEMO_DIR = Path(".demo")
TOKEN_LABEL = "CertGate Demo"
TOKEN_PIN = "123456"
TOKEN_SO_PIN = "12345678"
# A second "USB key" holding an SM2 certificate of the person, on the SM2 test module (a PKCS#11
# module standing in for a Chinese UKey's: SoftHSM has no SM2). It maps to the person's account
# by the ID-card number in the certificate.
SM2_TOKEN_LABEL = "CertGate SM2 Demo"
PREFERRED_CRL_PORT = 18701
PREFERRED_OCSP_PORT = 18702  # the test PKI uses this and the next two ports (one responder per CA)
PREFERRED_GATEWAY_PORT = 8080
PREFERRED_AGENT_PORT = 21790  # tokens.agent.DEFAULT_PORT
PREFERRED_OIDC_APP_PORT = 5001
PREFERRED_CAS_APP_PORT = 5002
REPOSITORY = Path(__file__).resolve().parent.parent  # examples/ lives beside softhsm/
# FOR THE DEMO ONLY: printed at start; the demo database keeps only its argon2id hash.
DEMO_PASSWORD = "certgate-demo-2026"
ENTERPRISE_LOGIN_NAME = "demo"
PERSON_LOGIN_NAME = "zhangsan"
PERSON_PHONE = "13800138000"
LEGAL_REPRESENTATIVE = "李四"
START_SECONDS = 60
STOP_SECONDS = 10
_SETPRIV = shutil.which("setpriv")


@dataclass(frozen=True)
class DemoIdentity:
    kind: str
    name: str
    key: str
    id_number: str | None = None
    uscc: str | None = None


DEMO_IDENTITIES = (
    DemoIdentity("enterprise", "示例建设工程有限公司", "rsa2048", uscc="91440300MA5H8REU3K"),
    DemoIdentity("person", "张三", "p256", id_number="11010519491231002X"),
)


def _ports_free(*ports: int) -> bool:
    for port in ports:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def _choose_ports() -> tuple[int, int]:
    """The documented ports when they are free, else a free block (CRL port, OCSP base port)."""
    preferred = (PREFERRED_CRL_PORT, PREFERRED_OCSP_PORT)
    if _ports_free(PREFERRED_CRL_PORT, *range(PREFERRED_OCSP_PORT, PREFERRED_OCSP_PORT + 3)):
        return preferred
    for base in range(20000, 60000, 7):
        if _ports_free(*range(base, base + 4)):
            return base, base + 1
    raise SystemExit("Error: no free loopback ports for the demo's CRL and OCSP servers")


def prepare(demo_dir: Path) -> tuple[TestPki, SoftHsmKit, list[tuple[DemoIdentity, str, Path]]]:
    """Create (or reopen) the demo PKI and token; returns them and the token's certificates."""
    ready = demo_dir / "ready"
    if demo_dir.exists() and not ready.exists():
        shutil.rmtree(demo_dir)  # an earlier run stopped half-way: start again from nothing
    kit = SoftHsmKit(demo_dir / "softhsm")
    listing = demo_dir / "certificates.tsv"
    if ready.exists():
        pki = TestPki.open(demo_dir / "pki")
    else:
        demo_dir.mkdir(parents=True)
        crl_port, ocsp_port = _choose_ports()
        pki = TestPki.create(demo_dir / "pki", crl_port=crl_port, ocsp_port=ocsp_port)
        kit.init_token(TOKEN_LABEL, TOKEN_PIN, TOKEN_SO_PIN)
        rows = []
        for identity in DEMO_IDENTITIES:
            provisioned = kit.issue(
                label=TOKEN_LABEL,
                pin=TOKEN_PIN,
                pki=pki,
                kind=identity.kind,
                name=identity.name,
                id_number=identity.id_number,
                uscc=identity.uscc,
                key=identity.key,
            )
            rows.append(f"{identity.kind}\t{provisioned.cert_id.hex()}\t{provisioned.cert_path}")
        listing.write_text("\n".join(rows) + "\n", encoding="utf-8")
        ready.write_text("ready\n", encoding="utf-8")
    by_kind = {identity.kind: identity for identity in DEMO_IDENTITIES}
    certificates = []
    for row in listing.read_text(encoding="utf-8").splitlines():
        kind, cert_id_hex, cert_path = row.split("\t")
        certificates.append((by_kind[kind], cert_id_hex, Path(cert_path)))
    return pki, kit, certificates


@dataclass(frozen=True)
class DemoSm2Key:
    ukey: Sm2UkeyDirectory
    cert_id_hex: str
    cert_path: Path


def prepare_sm2(demo_dir: Path, pki: TestPki) -> DemoSm2Key:
    """The SM2 demo key (created on first use, also in a ``.demo`` made before it existed)."""
    ukey = Sm2UkeyDirectory(demo_dir / "sm2-ukey")
    listing = demo_dir / "sm2.tsv"
    if not listing.exists():
        if any(t.label == SM2_TOKEN_LABEL for t in ukey.list_tokens()):
            ukey.delete_token(SM2_TOKEN_LABEL)  # a run stopped half-way: start the key again
        ukey.init_token(SM2_TOKEN_LABEL, TOKEN_PIN)
        person = next(who for who in DEMO_IDENTITIES if who.kind == "person")
        provisioned = ukey.issue(
            label=SM2_TOKEN_LABEL,
            pin=TOKEN_PIN,
            pki=pki,
            kind="person",
            name=person.name,
            id_number=person.id_number,
        )
        listing.write_text(
            f"{provisioned.cert_id.hex()}\t{provisioned.cert_path}\n", encoding="utf-8"
        )
    cert_id_hex, cert_path = listing.read_text(encoding="utf-8").strip().split("\t")
    ukey.module()  # compiled now, not while the agent starts
    return DemoSm2Key(ukey, cert_id_hex, Path(cert_path))


def _free_port(preferred: int) -> int:
    if _ports_free(preferred):
        return preferred
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _certgate_command() -> list[str]:
    """The ``certgate`` command of this interpreter's environment."""
    script = Path(sys.executable).with_name("certgate")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from gateway.cli import main; sys.exit(main())"]


def write_gateway_config(demo_dir: Path, pki: TestPki, origin: str) -> Path:
    """``certgate.toml`` for the demo gateway: its origin, database, data key, and the test PKI's
    root as trust anchor with its intermediates and CRLs (fetched from the PKI's CRL server)."""
    gateway_dir = demo_dir / "gateway"
    gateway_dir.mkdir(exist_ok=True)
    key_file = gateway_dir / "data-key"
    if not key_file.exists():
        key_file.write_text(base64.b64encode(os.urandom(32)).decode() + "\n", encoding="ascii")
    settings = {
        "public_origin": origin,
        "database_url": f"sqlite:///{gateway_dir / 'certgate.sqlite3'}",
        "data_key": key_file.read_text(encoding="ascii").strip(),
    }
    lines = [f"{name} = {json.dumps(value)}" for name, value in settings.items()]
    lines += [
        "",
        "[[trust.anchors]]",
        f"name = {json.dumps('CertGate Demo Test Root')}",
        f"certificate = {json.dumps(str(pki.ca_certificate_path('root')))}",
        "intermediates = "
        + json.dumps([str(pki.ca_certificate_path(ca)) for ca in CA_NAMES if ca != "root"]),
        'revocation = "hard-fail"',
        "crl = " + json.dumps([pki.crl_url(ca) for ca in CA_NAMES]),
        # SoftHSM keeps its keys in files, so the demo's "USB key" is a software key: the anchor
        # must not vouch for hardware keys (amr "swk", acr urn:certgate:loa:3).
        "hardware_keys = false",
    ]
    config = gateway_dir / "certgate.toml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config


def _run_certgate(arguments: Sequence[str], environment: Mapping[str, str], stdin: str = "") -> str:
    result = subprocess.run(
        [*_certgate_command(), *arguments],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **environment},
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"Error: certgate {' '.join(arguments[:3])}: {result.stderr.strip()}")
    return result.stdout


def create_demo_accounts(
    demo_dir: Path,
    certificates: Sequence[tuple[DemoIdentity, str, Path]],
    environment: Mapping[str, str],
) -> None:
    """The enterprise and the person of the demo token, with passwords, bound to their
    certificates, through the `certgate account` commands (once: ``gateway/accounts-ready``)."""
    ready = demo_dir / "gateway" / "accounts-ready"
    if ready.exists():
        return
    for identity, _, cert_path in certificates:
        if identity.kind == "enterprise":
            assert identity.uscc is not None
            reference = identity.uscc
            create = ["account", "create", "enterprise", identity.uscc, "--name", identity.name]
            create += ["--legal-representative", LEGAL_REPRESENTATIVE]
            create += ["--login-name", ENTERPRISE_LOGIN_NAME]
        else:
            assert identity.id_number is not None
            reference = identity.id_number
            create = ["account", "create", "person", identity.id_number, "--real-name"]
            create += [identity.name, "--phone", PERSON_PHONE, "--login-name", PERSON_LOGIN_NAME]
        _run_certgate([*create, "--password-stdin"], environment, stdin=DEMO_PASSWORD + "\n")
        bind = ["account", "bind", reference, "--certificate", str(cert_path)]
        _run_certgate([*bind, "--label", TOKEN_LABEL], environment)
    ready.write_text("ready\n", encoding="utf-8")


@dataclass(frozen=True)
class DemoApplications:
    oidc_url: str
    cas_url: str
    oidc_config: Path  # the OpenID Connect application's settings, its client secret included


def register_applications(
    demo_dir: Path, origin: str, oidc_port: int, cas_port: int, environment: Mapping[str, str]
) -> DemoApplications:
    """The two example applications as clients of the gateway (`certgate client add ...
    --json`), registered again when their URLs changed since the last run (another port)."""
    folder = demo_dir / "examples"
    folder.mkdir(exist_ok=True)
    oidc_url, cas_url = f"http://127.0.0.1:{oidc_port}", f"http://127.0.0.1:{cas_port}"
    registered_file = folder / "clients.json"
    registered = (
        json.loads(registered_file.read_text(encoding="utf-8")) if registered_file.exists() else {}
    )
    oidc = registered.get("oidc") or {}
    if oidc.get("url") != oidc_url or oidc.get("issuer") != origin:
        if oidc.get("client_id"):
            _run_certgate(["client", "remove", oidc["client_id"]], environment)
        answer = _run_certgate(
            [
                *("client", "add", "示例应用（OpenID Connect）", "--protocol", "oidc"),
                *("--redirect-uri", f"{oidc_url}/callback"),
                *("--post-logout-redirect-uri", f"{oidc_url}/"),
                *("--backchannel-logout-uri", f"{oidc_url}/backchannel-logout"),
                "--json",
            ],
            environment,
        )
        oidc = {**json.loads(answer), "url": oidc_url, "issuer": origin}
    cas = registered.get("cas") or {}
    if cas.get("url") != cas_url:
        if cas.get("client_id"):
            _run_certgate(["client", "remove", cas["client_id"]], environment)
        answer = _run_certgate(
            [
                *("client", "add", "示例应用（CAS）", "--protocol", "cas"),
                *("--service", f"{cas_url}/", "--json"),
            ],
            environment,
        )
        cas = {**json.loads(answer), "url": cas_url}
    registered_file.write_text(json.dumps({"oidc": oidc, "cas": cas}) + "\n", encoding="utf-8")
    oidc_config = folder / "oidc_app.toml"
    settings = {
        "issuer": origin,
        "client_id": oidc["client_id"],
        "client_secret": oidc["client_secret"],
        "host": "127.0.0.1",
        "port": oidc_port,
    }
    oidc_config.write_text(
        "".join(f"{name} = {json.dumps(value)}\n" for name, value in settings.items()),
        encoding="utf-8",
    )
    return DemoApplications(oidc_url, cas_url, oidc_config)


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


def start_child(
    name: str,
    arguments: Sequence[str],
    environment: Mapping[str, str],
    cwd: Path,
    logs: Path,
    command: Sequence[str] | None = None,
) -> Child:
    """A ``certgate`` child process (or ``command``), output to ``logs/<name>.log``. Started
    through ``setpriv --pdeathsig TERM`` when available, so it stops even if the demo is
    killed."""
    logs.mkdir(exist_ok=True)
    log = logs / f"{name}.log"
    die_with_parent = [_SETPRIV, "--pdeathsig", "TERM"] if _SETPRIV else []
    with log.open("ab") as output:
        process = subprocess.Popen(
            [*die_with_parent, *(command or _certgate_command()), *arguments],
            cwd=cwd,
            env={**os.environ, **environment},
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the demo, which stops the children in order
        )
    return Child(name, process, log)


def stop_children(children: Sequence[Child]) -> None:
    for child in reversed(children):
        if child.process.poll() is None:
            child.process.terminate()
    for child in reversed(children):
        try:
            child.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()


def _last_lines(path: Path, count: int = 5) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in lines[-count:])


def wait_until_answering(
    child: Child, url: str, headers: Mapping[str, str], stopped: threading.Event
) -> None:
    """Poll ``url`` until it answers 200; SystemExit naming the child if it exits first."""
    request = urllib.request.Request(url, headers=dict(headers))
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline and not stopped.is_set():
        if child.process.poll() is not None:
            raise SystemExit(
                f"Error: the {child.name} exited with status {child.process.returncode}; "
                f"the end of {child.log}:\n{_last_lines(child.log)}"
            )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        stopped.wait(0.2)
    if not stopped.is_set():
        raise SystemExit(f"Error: the {child.name} did not answer {url} within {START_SECONDS} s")


def _stop_event() -> threading.Event:
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    return stopped


def _watch(children: Sequence[Child], stopped: threading.Event) -> Child | None:
    """Wait for Ctrl-C/SIGTERM; the child that exited on its own, if that came first."""
    while not stopped.wait(0.5):
        for child in children:
            if child.process.poll() is not None:
                return child
    return None


def main() -> int:
    demo_dir = DEMO_DIR.resolve()
    stopped = _stop_event()
    print(f"Preparing the CertGate demo in {demo_dir} ...", flush=True)
    pki, kit, certificates = prepare(demo_dir)
    sm2 = prepare_sm2(demo_dir, pki)
    for ca in CA_NAMES:
        pki.publish_crl(ca)  # fresh CRLs for this run (a CRL is valid for a few days)
    conf = kit.environ()["SOFTHSM2_CONF"]
    gateway_port = _free_port(PREFERRED_GATEWAY_PORT)
    agent_port = _free_port(PREFERRED_AGENT_PORT)
    oidc_port = _free_port(PREFERRED_OIDC_APP_PORT)
    cas_port = _free_port(PREFERRED_CAS_APP_PORT)
    if cas_port == oidc_port:  # 5001 taken: both fell back to the kernel's pick, twice
        cas_port = _free_port(PREFERRED_CAS_APP_PORT + 1)
    origin = f"http://127.0.0.1:{gateway_port}"
    agent_url = f"http://127.0.0.1:{agent_port}"
    config = write_gateway_config(demo_dir, pki, origin)
    gateway_environment = {"CERTGATE_CONFIG_FILE": str(config), "CERTGATE_AGENT_URL": agent_url}
    create_demo_accounts(demo_dir, certificates, gateway_environment)
    applications = register_applications(demo_dir, origin, oidc_port, cas_port, gateway_environment)
    logs = demo_dir / "logs"
    children: list[Child] = []
    with pki.serve():
        try:
            gateway = ["serve", "--host", "127.0.0.1", "--port", str(gateway_port)]
            children.append(
                start_child("gateway", gateway, gateway_environment, config.parent, logs)
            )
            agent = ["agent", "serve", "--module", SOFTHSM_MODULE, "--allow-origin", origin]
            agent += ["--module", str(sm2.ukey.module_path)]
            agent += ["--sm2-mechanism", f"{SM2_SM3_MECHANISM:#x}", "--port", str(agent_port)]
            agent_environment = {"SOFTHSM2_CONF": conf, **sm2.ukey.environ()}
            children.append(start_child("agent", agent, agent_environment, demo_dir, logs))
            python = [sys.executable, "-m"]
            examples_environment = {
                "PYTHONPATH": os.pathsep.join(
                    filter(None, (str(REPOSITORY), os.environ.get("PYTHONPATH")))
                )
            }
            oidc_app = ["examples.oidc_app", "--config", str(applications.oidc_config)]
            children.append(
                start_child(
                    "oidc_app", oidc_app, examples_environment, REPOSITORY, logs, command=python
                )
            )
            cas_app = ["examples.cas_app", "--port", str(cas_port), "--cas-url", f"{origin}/cas"]
            children.append(
                start_child(
                    "cas_app", cas_app, examples_environment, REPOSITORY, logs, command=python
                )
            )
            wait_until_answering(children[0], f"{origin}/login", {}, stopped)
            wait_until_answering(
                children[1], f"{agent_url}/v1/certificates", {"Origin": origin}, stopped
            )
            wait_until_answering(children[2], f"{applications.oidc_url}/", {}, stopped)
            wait_until_answering(children[3], f"{applications.cas_url}/", {}, stopped)
            if not stopped.is_set():
                _print_ready(
                    demo_dir, pki, certificates, conf, origin, agent_url, logs, applications, sm2
                )
            exited = _watch(children, stopped)
            if exited is not None:
                print(
                    f"\nThe {exited.name} stopped (status {exited.process.returncode}); "
                    f"the end of {exited.log}:\n{_last_lines(exited.log)}",
                    file=sys.stderr,
                )
        finally:
            stop_children(children)
    print("Demo stopped.")
    return 0


def _print_applications(applications: DemoApplications, logs: Path) -> None:
    print(
        f"""
Applications signing in through CertGate (single sign-on; pulling the key signs them out too):

  OpenID Connect  {applications.oidc_url}/   log {logs / "oidc_app.log"}
  CAS 3.0         {applications.cas_url}/   log {logs / "cas_app.log"}
""",
        flush=True,
    )


def _print_ready(
    demo_dir: Path,
    pki: TestPki,
    certificates: Sequence[tuple[DemoIdentity, str, Path]],
    conf: str,
    origin: str,
    agent_url: str,
    logs: Path,
    applications: DemoApplications,
    sm2: DemoSm2Key,
) -> None:
    enterprise = next(who for who, _, _ in certificates if who.kind == "enterprise")
    person = next(who for who, _, _ in certificates if who.kind == "person")
    print(f"""
CertGate demo is running.

  Open         {origin}/login   (Chinese; "English" at the top right)

  USB key      SoftHSM token "{TOKEN_LABEL}", PIN {TOKEN_PIN} (SO PIN {TOKEN_SO_PIN}):
               pick the enterprise or the person certificate, type the PIN, tick the agreement
  SM2 key      "{SM2_TOKEN_LABEL}", PIN {TOKEN_PIN}: the person's SM2 (国密) certificate
  Password     {DEMO_PASSWORD}   for the enterprise {enterprise.name}: login name
               "{ENTERPRISE_LOGIN_NAME}" or credit code {enterprise.uscc}; for the person
               {person.name}: login name "{PERSON_LOGIN_NAME}", phone {PERSON_PHONE} or ID-card
               number {person.id_number}

  Gateway      {origin}   log {logs / "gateway.log"}
               config {demo_dir / "gateway" / "certgate.toml"}
  Agent        {agent_url}   log {logs / "agent.log"}
  Test PKI     {demo_dir / "pki"}  (test keys, unencrypted: never trust this root in production)
               CRL {pki.crl_url("rsa")}   OCSP {pki.ocsp_url("rsa")}
""")
    for identity, cert_id_hex, cert_path in certificates:
        holder = identity.uscc or identity.id_number
        print(
            f"  {identity.kind:<10}   {identity.name} ({holder}), {identity.key}, "
            f"CKA_ID {cert_id_hex}\n               {cert_path}"
        )
    print(
        f"  {'person':<10}   {person.name} ({person.id_number}), sm2, CKA_ID {sm2.cert_id_hex}\n"
        f"               {sm2.cert_path}"
    )
    _print_applications(applications, logs)
    print(
        f"""Sign in from a script:

  CERTGATE_PIN={TOKEN_PIN} SOFTHSM2_CONF={conf} \\
      .venv/bin/certgate agent login {origin} --cert-id {certificates[0][1]}

Pull the key out while signed in (the page returns to the login page; delete
{demo_dir} and run `make demo` again to get a new token):

  .venv/bin/certgate softhsm delete --dir {demo_dir / "softhsm"} --label "{TOKEN_LABEL}"

Press Ctrl-C to stop.""",
        flush=True,
    )


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main())
