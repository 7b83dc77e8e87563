"""The pytest plugin of the post-change verification, registered through the `pytest11` entry point.

Once remediate is installed, any pytest run has its options; the suite runs with

    pytest --pyargs remediate.verification --inventory inventories/lab --dn 5001

The plugin stays inert unless `--dn` or `--run` is given (it is loaded into every pytest session
of the machine, the project's own included). Then it loads the site from the inventory, the run's
record if any, and gives tests, the bundled ones and a site's own, these session fixtures:

- `site` (remediate.inventory.Site), `dns` (the DNs), `dn` (each DN: tests that take it run once
  per DN), `fix` (the fix whose configuration must be present, or None), `since` (from when log
  events count);
- `genesys_host` (testinfra, `winrm://`), `asterisk_host` (testinfra, `ssh://`), `gax`
  (remediate.genesys.gax.GaxClient, logged in);
- `genesys_clock`, `registrations`, `gateway_configuration`, `asterisk_registrations`,
  `sip_server`: what several checks read, read once.

Each test case carries JUnit properties `check` and `target` (and `unreachable` when a host could
not be reached), which `remediate verify` turns into its table.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # loaded into every pytest session: the heavy imports wait until needed
    from remediate.verification.context import Since, VerificationTarget

BUNDLED_DIR = Path(__file__).resolve().parent
FIX_MARKER = "remediate_fix"
LOOKBACK = timedelta(hours=24)
_TARGET = pytest.StashKey["VerificationTarget"]()
_BUNDLED_ORDER = {
    BUNDLED_DIR / f"test_{name}.py": index
    for index, name in enumerate(("genesys", "asterisk", "network"))
}
# Fixture -> what the target column says for tests that use it (the first one found wins).
_TARGETS = (
    "genesys_host",
    "gax",
    "gateway_configuration",
    "asterisk_host",
    "asterisk_registrations",
    "sip_server",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("remediate", "remediate post-change verification")
    group.addoption(
        "--inventory",
        dest="remediate_inventory",
        type=Path,
        metavar="PATH",
        help="the Ansible inventory (default: $REMEDIATE_INVENTORY, else inventories/lab)",
    )
    group.addoption(
        "--site", dest="remediate_site", metavar="NAME", help="the site_<NAME> group to verify"
    )
    group.addoption(
        "--dn",
        dest="remediate_dns",
        action="append",
        default=[],
        metavar="DN",
        help="a DN to verify (repeatable; default with --run: the run's DNs)",
    )
    group.addoption(
        "--run",
        dest="remediate_run",
        metavar="RUN_ID",
        help="verify after this run: log events count from its restart, its fix is checked",
    )
    group.addoption(
        "--state-dir",
        dest="remediate_state_dir",
        type=Path,
        metavar="DIR",
        help="where run records are (default: $REMEDIATE_STATE_DIR, else the XDG state home)",
    )
    group.addoption(
        "--fix",
        dest="remediate_fix",
        metavar="NAME",
        help="the fix whose configuration must be present (default: the run's)",
    )
    group.addoption(
        "--vault-password-file",
        dest="remediate_vault_password_file",
        type=Path,
        metavar="FILE",
        help="Ansible Vault password file (default: $ANSIBLE_VAULT_PASSWORD_FILE)",
    )


def _active(config: pytest.Config) -> bool:
    return bool(config.option.remediate_dns or config.option.remediate_run)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{FIX_MARKER}(*fixes, what): the check applies only after one of these fixes (`what` "
        "names what it checks); otherwise it is skipped with the reason",
    )
    if not _active(config):
        return
    from remediate.errors import RemediateError
    from remediate.verification.context import resolve_target

    option = config.option
    try:
        config.stash[_TARGET] = resolve_target(
            option.remediate_inventory,
            option.remediate_site,
            option.remediate_dns,
            run_id=option.remediate_run,
            state_dir=option.remediate_state_dir,
            fix=option.remediate_fix,
            vault_password_file=option.remediate_vault_password_file,
        )
    except RemediateError as error:
        hint = f" (hint: {error.hint})" if error.hint else ""
        raise pytest.UsageError(f"{error.reference}: {error.message}{hint}") from None


def pytest_report_header(config: pytest.Config) -> list[str]:
    target = config.stash.get(_TARGET, None)
    if target is None:
        return []
    from remediate.verification.remote import certificate_note

    return [
        f"remediate verification: {target.describe()}",
        f"  {target.site.genesys.name}: {certificate_note(target.site.genesys.winrm)}; "
        f"{target.site.asterisk.name}: ssh with StrictHostKeyChecking=yes, "
        f"UserKnownHostsFile={target.site.asterisk.ssh.known_hosts_file}",
    ]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    target = metafunc.config.stash.get(_TARGET, None)
    if target is not None and "dn" in metafunc.fixturenames:
        metafunc.parametrize("dn", target.dns, ids=list(target.dns), scope="function")


def _target_of(item: pytest.Item, target: VerificationTarget) -> str:
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "dn" in callspec.params:
        return str(callspec.params["dn"])
    names = getattr(item, "fixturenames", ())
    site = target.site
    for fixture in _TARGETS:
        if fixture not in names:
            continue
        if fixture.startswith("asterisk_"):
            return site.asterisk.name
        if fixture == "sip_server":
            return f"{site.genesys.sip_address}:{site.genesys.sip_port}"
        return site.genesys.name
    return site.name


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    target = config.stash.get(_TARGET, None)
    if target is None:
        if any(BUNDLED_DIR in item.path.parents for item in items):
            raise pytest.UsageError(
                "the remediate verification suite needs the DNs to verify: --dn DN (repeatable) "
                "or --run RUN_ID, with --inventory PATH"
            )
        return
    # The bundled checks in the order an operator reads them; a site's own checks after them.
    items.sort(key=lambda item: _BUNDLED_ORDER.get(item.path, len(_BUNDLED_ORDER)))
    for item in items:
        name = getattr(item, "originalname", item.name)
        item.user_properties.append(("check", name.removeprefix("test_")))
        item.user_properties.append(("target", _target_of(item, target)))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip, before any host is reached, a check that does not apply to the fix."""
    target = item.config.stash.get(_TARGET, None)
    marker = item.get_closest_marker(FIX_MARKER)
    if target is None or marker is None:
        return
    fixes = " or ".join(marker.args)
    what = marker.kwargs.get("what", "this")
    if target.fix is None:
        why = f"run {target.run.run_id} applied no fix" if target.run else "no fix named"
        pytest.skip(f"{why} (--fix or --run): {what} is checked after the {fixes} fix")
    if target.fix not in marker.args:
        pytest.skip(f"the {target.fix} fix does not write {what} (checked after {fixes})")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if call.excinfo is not None:
        from remediate.verification.remote import HostUnreachable

        if call.excinfo.errisinstance(HostUnreachable):
            item.user_properties.append(("unreachable", str(call.excinfo.value)))
    return report


# Fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def verification_target(request: pytest.FixtureRequest) -> VerificationTarget:
    target = request.config.stash.get(_TARGET, None)
    if target is None:
        pytest.fail("remediate verification needs --dn DN (or --run RUN_ID)", pytrace=False)
    return target


@pytest.fixture(scope="session")
def site(verification_target: VerificationTarget) -> Any:
    return verification_target.site


@pytest.fixture(scope="session")
def dns(verification_target: VerificationTarget) -> list[str]:
    return list(verification_target.dns)


@pytest.fixture(scope="session")
def fix(verification_target: VerificationTarget) -> str | None:
    return verification_target.fix


@pytest.fixture(scope="session")
def genesys_host(site: Any) -> Any:
    """testinfra's `winrm://` host for the SIP Server host, proven reachable."""
    from remediate.verification import remote

    host = remote.winrm_host(site.genesys.winrm)
    remote.host_clock(host, site)
    return host


@pytest.fixture(scope="session")
def genesys_clock(genesys_host: Any, site: Any) -> datetime:
    """The SIP Server host's clock now (aware, in the host's zone)."""
    from remediate.verification import remote

    return remote.host_clock(genesys_host, site)


@pytest.fixture(scope="session")
def since(verification_target: VerificationTarget, genesys_clock: datetime) -> Since:
    """From when SIP Server log events count."""
    from remediate.verification.context import Since

    if verification_target.since is not None:
        return verification_target.since
    start = genesys_clock - LOOKBACK
    return Since(start, f"{start.isoformat(timespec='seconds')} (the last 24 h)", False)


@pytest.fixture(scope="session")
def registrations(
    genesys_host: Any, site: Any, dns: list[str], since: Since, genesys_clock: datetime
) -> Any:
    """The DNs' registrations in the SIP Server log since `since` (without a restart there, and
    24 h before it too: a binding accepted before still holds)."""
    from remediate.verification import remote

    start = since.moment if since.after_restart else min(since.moment, genesys_clock - LOOKBACK)
    return remote.registration_history(genesys_host, site, dns, start)


@pytest.fixture(scope="session")
def asterisk_host(site: Any) -> Any:
    """testinfra's `ssh://` host for the Asterisk host, proven reachable."""
    from remediate.verification import remote

    host = remote.ssh_host(site.asterisk.ssh)
    with remote.reaching(f"{site.asterisk.name} (SSH)"):
        host.run("true")
    return host


@pytest.fixture(scope="session")
def asterisk_registrations(asterisk_host: Any, site: Any) -> dict[str, Any]:
    """`pjsip show registrations`, by registration name."""
    from remediate.asterisk import cli
    from remediate.verification import remote

    command = cli.show_registrations()
    output = cli.check_output(command, remote.asterisk_rx(asterisk_host, site, command))
    return {row.name: row for row in cli.parse_registrations(output)}


@pytest.fixture(scope="session")
def gax(site: Any) -> Iterator[Any]:
    """A logged-in GAX session (remediate.genesys.gax.GaxClient)."""
    from remediate.genesys.gax import GaxClient
    from remediate.verification import remote

    with GaxClient(site.genesys.gax) as client:
        with remote.reaching(f"{site.genesys.name} (GAX)"):
            client.login()
        yield client


@pytest.fixture(scope="session")
def gateway_configuration(gax: Any, site: Any, dns: list[str]) -> dict[str, Any]:
    """What Genesys configuration says of the gateway and the DNs (`coverage`,
    `dn_configuration`), as the live diagnosis reads it."""
    from remediate import live
    from remediate.verification import remote

    with remote.reaching(f"{site.genesys.name} (GAX)"):
        return live.collect_gax(site, gax, dns)


@pytest.fixture(scope="session")
def sip_server(site: Any) -> tuple[str, int]:
    """The SIP Server's SIP address and port."""
    return site.genesys.sip_address, site.genesys.sip_port
