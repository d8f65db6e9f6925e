"""The receivers file (ALPR_ALERT_RECEIVERS): every fault is one ConfigError naming the file, and no
secret shows in it."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from common.alerts import MqttReceiver, WebhookReceiver, load_receivers, receiver_routes
from common.errors import ConfigError
from tests.conftest import unavailable

SECRET = "receiver-secret-0123456789"


def webhook(url: str = "https://hooks.example.org/alpr", secret_line: str = f"    secret: {SECRET}\n") -> str:
    return f"receivers:\n  ops:\n    type: webhook\n    url: {url}\n" + secret_line


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        (b"\xff\xfe receivers", "not UTF-8"),
        (b"receivers: [unclosed", "not valid YAML"),
        (b"receivers: []\n", "expected `receivers:`"),
        (b"other: 1\n", "expected `receivers:`"),
        (b"receivers:\n  'bad name!': {type: webhook}\n", "receiver names are"),
        (webhook("ftp://x.example.org/").encode(), "http:// or https://"),
        (webhook("https://hooks.example.org/café").encode(), "beyond ASCII: write them percent-encoded"),
        (webhook(secret_line="    secret: short\n").encode(), "secret"),
        (webhook(secret_line="    secret_file: /nonexistent/secret\n").encode(), "its secret_file: cannot read"),
        (b"receivers:\n  m:\n    type: mqtt\n    host: broker\n    topic: alpr/#\n", "wildcards"),
        (b"receivers:\n  m:\n    type: mqtt\n    host: broker\n    topic: $SYS/alpr\n", r"starting with \$"),
        (b"receivers:\n  m: {type: mqtt, host: broker, topic: t, protocol: 3.1}\n", "protocol"),
        (b"x" * 70000, "larger than"),
        (
            b"receivers:\n  ops.a: {type: mqtt, host: b, topic: t}\n  ops_a: {type: mqtt, host: b, topic: u}\n",
            "receivers ops.a and ops_a differ only in",
        ),  # one RQ job id for both
        (  # the second replaced the first without a word: the first never got an alert
            b"receivers:\n  ops: {type: mqtt, host: a, topic: t}\n  ops: {type: mqtt, host: b, topic: t}\n",
            r"key 'ops' repeated in one mapping \(first at line 2\) at line 3",
        ),
        (b"a: &x [1, 2]\nreceivers: {ops: *x}\n", r"aliases \(\*x\) are not allowed"),  # read as strictly as cameras
        (b"receivers: " + b"[" * 3000 + b"]" * 3000, "nested deeper than 20"),
    ],
)
def test_a_bad_receivers_file_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "receivers.yaml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as caught:
        load_receivers(path)
    assert str(path) in str(caught.value) and SECRET not in str(caught.value) and "short" not in str(caught.value)
    assert "\n" not in str(caught.value)


def test_secrets_are_read_from_files(tmp_path):
    (tmp_path / "hook.secret").write_text(SECRET + "\n")
    path = tmp_path / "receivers.yaml"
    path.write_text(webhook(secret_line=f"    secret_file: {tmp_path / 'hook.secret'}\n"))
    (receiver,) = load_receivers(path).values()
    assert isinstance(receiver, WebhookReceiver) and receiver.secret.get_secret_value() == SECRET
    assert SECRET not in repr(receiver)


def test_the_sighting_pool_learns_the_names_without_reading_a_secret(tmp_path):
    path = tmp_path / "receivers.yaml"
    path.write_text(webhook(secret_line="    secret_file: /run/secrets/readable-by-the-alert-pool-only\n"))
    assert receiver_routes(path) == {"ops": None}
    with pytest.raises(ConfigError, match="its secret_file: cannot read: it does not exist"):
        load_receivers(path)  # the alert pool, which sends, reads it


def test_a_file_that_lists_no_receiver_loads_empty(tmp_path):
    path = tmp_path / "receivers.yaml"
    path.write_text("receivers: {}\n")
    assert load_receivers(path) == {} and receiver_routes(path) == {}


def test_a_secret_written_where_its_file_belongs_stays_out_of_the_message(tmp_path):
    path = tmp_path / "receivers.yaml"
    path.write_text(webhook(secret_line=f"    secret_file: {SECRET}\n"))  # the secret itself, by mistake
    with pytest.raises(ConfigError) as caught:
        load_receivers(path)
    assert str(caught.value) == f"{path}: receiver ops: its secret_file: cannot read: it does not exist"


def test_a_ca_file_that_holds_no_certificate_is_refused_at_load(tmp_path):
    """It was checked for being a file only: every delivery then failed as an unexpected SSLError,
    retried for a day, never saying why."""
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate\n")
    path = tmp_path / "receivers.yaml"
    path.write_text(f"receivers:\n  m: {{type: mqtt, host: broker, topic: t, tls: true, ca_file: {ca}}}\n")
    with pytest.raises(ConfigError, match="holds no PEM certificate"):
        load_receivers(path)


def test_a_receiver_takes_the_lists_it_names_and_both_pools_read_them_alike(tmp_path):
    (tmp_path / "hook.secret").write_text(SECRET + "\n")
    path = tmp_path / "receivers.yaml"
    lists = "    lists: [stolen, amber.2026]\n"
    path.write_text(webhook(secret_line=f"    secret_file: {tmp_path / 'hook.secret'}\n" + lists))
    (receiver,) = load_receivers(path).values()
    assert receiver.list_filter == frozenset({"stolen", "amber.2026"})
    assert receiver_routes(path) == {"ops": frozenset({"stolen", "amber.2026"})}


@pytest.mark.parametrize(
    ("lists", "says"),
    [("[]", "at least 1 item"), ("[stolen, 'no/slash']", "lists.1"), ("stolen", "valid tuple"), ("[1]", "in quotes")],
)
def test_a_lists_setting_that_routes_nothing_or_no_list_is_refused_by_both_pools(tmp_path, lists, says):
    path = tmp_path / "receivers.yaml"
    path.write_text(webhook(secret_line=f"    secret: {SECRET}\n    lists: {lists}\n"))
    for read in (load_receivers, receiver_routes):
        with pytest.raises(ConfigError, match=says) as refused:
            read(path)
        assert "receiver ops" in str(refused.value) and SECRET not in str(refused.value)


def mqtt(secret_line: str) -> str:
    return (
        "receivers:\n  broker:\n    type: mqtt\n    host: 127.0.0.1\n    topic: alpr/alerts\n    username: alpr\n"
        + (secret_line)
    )


@pytest.mark.parametrize("content", [b"", b"\n", b"  \t\r\n", b"\r\n\r\n"])
@pytest.mark.parametrize(("receiver", "field"), [("mqtt", "password_file"), ("webhook", "secret_file")])
def test_a_secret_file_that_holds_nothing_is_refused(tmp_path, content, receiver, field):
    """An empty password_file loaded an MQTT password of nothing: the broker refused every delivery
    ("Not authorized"), each retried for a day. An empty secret_file said only "secret: at least 16
    characters", of a secret the file never showed."""
    secret = tmp_path / "empty.secret"
    secret.write_bytes(content)
    path = tmp_path / "receivers.yaml"
    line = f"    {field}: {secret}\n"
    path.write_text(mqtt(line) if receiver == "mqtt" else webhook(secret_line=line))
    with pytest.raises(ConfigError) as refused:
        load_receivers(path)
    name = "broker" if receiver == "mqtt" else "ops"
    assert str(refused.value) == (
        f"{path}: receiver {name}: its {field}: the file it names is empty (or holds only spaces and line ends)"
    )


@pytest.mark.parametrize(("receiver", "field"), [("mqtt", "password"), ("webhook", "secret")])
def test_a_secret_written_in_place_and_in_a_file_is_refused(tmp_path, receiver, field):
    """Both given, the file silently won: the operator who changed the one in place changed nothing."""
    (tmp_path / "file.secret").write_text("file-secret-0123456789\n")
    path = tmp_path / "receivers.yaml"
    lines = f"    {field}: {SECRET}\n    {field}_file: {tmp_path / 'file.secret'}\n"
    path.write_text(mqtt(lines) if receiver == "mqtt" else webhook(secret_line=lines))
    with pytest.raises(ConfigError) as refused:
        load_receivers(path)
    name = "broker" if receiver == "mqtt" else "ops"
    assert str(refused.value) == f"{path}: receiver {name}: set {field} or {field}_file, not both"


@pytest.mark.parametrize(("receiver", "field"), [("mqtt", "password_file"), ("webhook", "secret_file")])
def test_a_secret_file_other_users_may_write_is_refused(tmp_path, receiver, field):
    """Anyone local could set the password (or the key alerts are signed with) by writing the file."""
    secret = tmp_path / "file.secret"
    secret.write_text(SECRET + "\n")
    path = tmp_path / "receivers.yaml"
    line = f"    {field}: {secret}\n"
    path.write_text(mqtt(line) if receiver == "mqtt" else webhook(secret_line=line))
    os.chmod(secret, 0o644)  # others may read it, as compose's secrets
    assert len(load_receivers(path)) == 1
    os.chmod(secret, 0o646)
    with pytest.raises(ConfigError) as refused:
        load_receivers(path)
    name = "broker" if receiver == "mqtt" else "ops"
    assert str(refused.value).startswith(
        f"{path}: receiver {name}: its {field}: the file it names may be written by other users of this host"
        " (mode 0646)"
    )
    assert "chmod go-w" in str(refused.value) and SECRET not in str(refused.value)


@pytest.mark.parametrize(("written", "read"), [("", "auto"), ("protocol: 5", "5"), ("protocol: '5'", "5"),
                                               ("protocol: 3.1.1", "3.1.1"), ("protocol: auto", "auto")])  # fmt: skip
def test_an_mqtt_receivers_protocol_is_read_as_written(tmp_path, written, read):
    """MQTT 5 by default (`auto`: 3.1.1 where the broker refuses 5); `protocol: 5` is a number in YAML."""
    path = tmp_path / "receivers.yaml"
    path.write_text(f"receivers:\n  m:\n    type: mqtt\n    host: broker\n    topic: alpr/alerts\n    {written}\n")
    (receiver,) = load_receivers(path).values()
    assert isinstance(receiver, MqttReceiver) and receiver.protocol == read


def hook(name: str, secret_line: str) -> str:
    return f"  {name}:\n    type: webhook\n    url: https://{name}.example.org/alpr\n" + secret_line


@pytest.mark.parametrize("second", ["file", "in place"])
def test_two_webhooks_that_share_a_secret_are_refused_naming_both(tmp_path, second):
    """The signature covers the timestamp and the body, not the receiver: with the parking list routed to the
    parking office and the stolen list to the police on one secret, the parking office could sign "stolen"
    alerts the police took for the alert pool's (a review). Refused, naming the two, never the secret."""
    (tmp_path / "hook.secret").write_text(SECRET + "\n")
    in_file = f"    secret_file: {tmp_path / 'hook.secret'}\n"
    path = tmp_path / "receivers.yaml"
    path.write_text("receivers:\n" + hook("police", in_file) + hook("parking", in_file if second == "file"
                                                                     else f"    secret: {SECRET}\n"))  # fmt: skip
    with pytest.raises(ConfigError) as refused:
        load_receivers(path)
    assert str(refused.value) == (
        f"{path}: receivers police and parking share one secret: either could sign alerts the other takes for"
        " the alert pool's; give each webhook a secret of its own"
    )
    path.write_text("receivers:\n" + hook("police", in_file) + hook("parking", f"    secret: {SECRET}-parking\n"))
    assert set(load_receivers(path)) == {"police", "parking"}


def test_an_mqtt_password_like_a_webhooks_secret_is_no_shared_signing_key(tmp_path):
    """MQTT alerts are not signed: a broker password that is also a webhook's secret lets neither sign."""
    path = tmp_path / "receivers.yaml"
    room = f"  room:\n    type: mqtt\n    host: 127.0.0.1\n    topic: t\n    username: u\n    password: {SECRET}\n"
    path.write_text("receivers:\n" + hook("police", f"    secret: {SECRET}\n") + room)
    assert set(load_receivers(path)) == {"police", "room"}


SPACES_SAID = "webhook.secret: a secret needs at least 16 characters besides the spaces around them"
TIMEOUT_SAID = "webhook.timeout_s: Input should be greater than or equal to 0.1"
PORT_SAID = "webhook.url: the URL's port is not a number from 1 to 65535"


@pytest.mark.parametrize(
    ("url", "lines", "said"),
    [
        ("https://hooks.example.org/alpr", f"    secret: '{' ' * 20}'\n", SPACES_SAID),
        ("https://hooks.example.org/alpr", f"    secret: '  {SECRET[:15]}  '\n", SPACES_SAID),
        ("https://hooks.example.org/alpr", f"    secret: {SECRET}\n    timeout_s: 1e-9\n", TIMEOUT_SAID),
        ("https://hooks.example.org/alpr", f"    secret: {SECRET}\n    timeout_s: 0.05\n", TIMEOUT_SAID),
        ("http://127.0.0.1:0/x", f"    secret: {SECRET}\n", PORT_SAID),
    ],
)  # fmt: skip
def test_a_secret_of_spaces_a_timeout_no_attempt_meets_and_port_0_are_refused(tmp_path, url, lines, said):
    """Each was taken: an HMAC key of spaces anyone could guess (a secret file of spaces was refused); a
    timeout every attempt ran past, and a port nothing listens on, each alert then retried for a day."""
    path = tmp_path / "receivers.yaml"
    path.write_text(webhook(url, secret_line=lines))
    with pytest.raises(ConfigError) as refused:
        load_receivers(path)
    assert str(refused.value) == f"{path}: receiver ops: {said}"


def test_the_shortest_timeout_and_a_secret_with_spaces_around_enough_characters_are_taken(tmp_path):
    path = tmp_path / "receivers.yaml"
    path.write_text(webhook(secret_line=f"    secret: '  {SECRET}  '\n    timeout_s: 0.1\n"))
    (receiver,) = load_receivers(path).values()
    assert receiver.timeout_s == 0.1


@pytest.mark.parametrize("lists", ["[2024]", "[007]", "[on]", "[stolen, 1.5]", "[2026-01-01]", "[null]"])
def test_a_list_name_yaml_reads_as_no_text_is_refused_saying_to_quote_it(tmp_path, lists):
    """`lists: [2024]` said "Input should be a valid string; ... Tuple should have at least 1 item after
    validation, not 0": the second part wrong (one name was given) and no word of the quotes it needed."""
    path = tmp_path / "receivers.yaml"
    path.write_text(webhook(secret_line=f"    secret: {SECRET}\n    lists: {lists}\n"))
    for read, place in ((load_receivers, "webhook.lists"), (receiver_routes, "lists")):
        with pytest.raises(ConfigError) as refused:
            read(path)
        assert str(refused.value) == (
            f"{path}: receiver ops: {place}: a list name YAML reads as a number, a date or true/false"
            " (2024, 007, on) is written in quotes: lists: ['2024']"
        )
    path.write_text(webhook(secret_line=f"    secret: {SECRET}\n    lists: ['2024', '007', 'on']\n"))
    assert receiver_routes(path) == {"ops": frozenset({"2024", "007", "on"})}


@pytest.mark.parametrize("password", ["''", "'    '"])
def test_an_mqtt_password_written_in_place_of_only_spaces_is_refused(tmp_path, password):
    """A password file of spaces was refused, one written in place was taken: the broker refused every
    delivery, each retried for a day."""
    path = tmp_path / "receivers.yaml"
    path.write_text(f"receivers:\n  room:\n    type: mqtt\n    host: 127.0.0.1\n    topic: t\n    username: u\n"
                    f"    password: {password}\n")  # fmt: skip
    with pytest.raises(ConfigError) as refused:
        load_receivers(path)
    assert "the password is empty or only spaces" in str(refused.value) and "room" in str(refused.value)


UNKNOWN_GID = 54321
"""A group id no group of this host has (taken to have other members)."""


@pytest.fixture
def open_folder():
    """A folder others may go through (0755 under /tmp), unlike pytest's tmp_path (under a folder of 0700):
    what a receivers file in /etc/alpr is."""
    folder = Path(tempfile.mkdtemp(prefix="alpr-receivers-"))
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder)


@pytest.mark.parametrize(("receiver", "mode"), [("webhook", 0o644), ("mqtt", 0o644), ("webhook", 0o640)])
def test_secrets_written_in_a_file_others_may_read_are_warned_of(open_folder, caplog, receiver, mode):
    """A review: a receivers file of mode 0644 (umask 022) holding every webhook's HMAC key and the broker's
    password in place loaded without a word, for any local user to read and sign alerts with. 0640 of a
    group with others in it (here one this host does not know, as a host's in a container) too."""
    path = open_folder / "receivers.yaml"
    in_place = f"    password: {SECRET}\n" if receiver == "mqtt" else f"    secret: {SECRET}\n"
    path.write_text(mqtt(in_place) if receiver == "mqtt" else webhook(secret_line=in_place))
    os.chmod(path, mode)
    if mode == 0o640:
        if os.geteuid() != 0:
            pytest.skip("giving the file a group of no known members takes root")
        os.chown(path, -1, UNKNOWN_GID)
    with caplog.at_level(logging.WARNING):
        assert len(load_receivers(path)) == 1
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    name = "broker" if receiver == "mqtt" else "ops"
    assert len(warned) == 1 and f"{path} (mode {mode:04o}) holds the secrets of {name} in place" in warned[0]
    assert SECRET not in warned[0] and "chmod go-r" in warned[0]


@pytest.mark.parametrize("case", ["owner-only", "folder-0700", "secret-file"])
def test_secrets_only_their_owner_reads_or_kept_in_files_are_not_warned_of(open_folder, caplog, case):
    """0600 under /etc/alpr, or 0644 in a folder of 0700 (compose's secrets folder), or secrets in files
    (their own folder guards them): no word."""
    folder = open_folder / "private" if case == "folder-0700" else open_folder
    folder.mkdir(exist_ok=True)
    os.chmod(folder, 0o700 if case == "folder-0700" else 0o755)
    path = folder / "receivers.yaml"
    line = f"    secret: {SECRET}\n"
    if case == "secret-file":
        (folder / "hook.secret").write_text(SECRET)
        line = f"    secret_file: {folder / 'hook.secret'}\n"
    path.write_text(webhook(secret_line=line))
    os.chmod(path, 0o600 if case == "owner-only" else 0o644)
    with caplog.at_level(logging.WARNING):
        assert len(load_receivers(path)) == 1
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_receivers_file_other_users_may_write_is_refused(tmp_path):
    """Whoever writes the file names where alerts go (a URL of theirs gets every plate) and which secret
    files sign them: it was taken at 0666, while a secret file others may write was refused."""
    path = tmp_path / "receivers.yaml"
    path.write_text(webhook())
    os.chmod(path, 0o644)
    assert len(load_receivers(path)) == 1
    os.chmod(path, 0o666)
    with pytest.raises(ConfigError) as refused:
        load_receivers(path)
    assert str(refused.value).startswith(f"{path}: other users of this host may write it (mode 0666)")
    assert "chmod go-w" in str(refused.value) and SECRET not in str(refused.value)


def test_a_ca_file_other_users_may_write_is_refused(tmp_path):
    """Whoever writes the CA file picks the brokers the receiver trusts over TLS, and gets the password
    and every alert from the broker they put in between."""
    if shutil.which("openssl") is None:
        unavailable("openssl is not installed")
    ca = tmp_path / "ca.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=ca",
         "-keyout", str(tmp_path / "ca.key"), "-out", str(ca)],
        check=True, capture_output=True,
    )  # fmt: skip
    path = tmp_path / "receivers.yaml"
    path.write_text(mqtt(f"    password: {SECRET}\n    tls: true\n    ca_file: {ca}\n"))
    os.chmod(ca, 0o644)
    assert len(load_receivers(path)) == 1
    os.chmod(ca, 0o646)
    with pytest.raises(ConfigError) as refused:
        load_receivers(path)
    assert f"ca_file {ca} may be written by other users of this host (mode 0646)" in str(refused.value)
    assert "chmod go-w" in str(refused.value) and SECRET not in str(refused.value)


def test_the_shipped_compose_receivers_file_checked_out_under_umask_002_starts_the_alert_pool(tmp_path, caplog):
    """Git checks files out at the user's umask: 002 on Debian, Ubuntu and Fedora makes the shipped
    deploy/receivers.compose.yaml 0664, owned by the host user and the host user's own group (uid = gid),
    neither known in the container. Refused as writable by others, the compose stack's alert pool stopped at
    every start (a review): such a file is said in a WARNING (chmod g-w). Refused as before: writable by others;
    a group known here with another member; another user's file whose group differs from its owner's number."""
    import grp
    import shutil as shell

    if os.geteuid() != 0:
        pytest.skip("giving the file an owner and group no one here has takes root")
    shipped = Path(__file__).resolve().parents[2] / "deploy" / "receivers.compose.yaml"
    path = tmp_path / "receivers.yaml"
    shell.copyfile(shipped, path)
    os.chmod(path, 0o664)
    os.chown(path, UNKNOWN_GID, UNKNOWN_GID)  # a host user 54321:54321, seen from a container
    with caplog.at_level(logging.WARNING):
        load_receivers(path)  # was: ConfigError "other users of this host may write it (mode 0664)"
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(f"may be written by its group, {UNKNOWN_GID}, a host user's own" in s for s in said), said
    os.chmod(path, 0o666)
    with pytest.raises(ConfigError):
        load_receivers(path)  # others may write it
    os.chmod(path, 0o664)
    os.chown(path, UNKNOWN_GID + 1, UNKNOWN_GID)  # another user's file, a group that is not its own
    with pytest.raises(ConfigError):
        load_receivers(path)
    os.chown(path, 0, grp.getgrnam("nogroup").gr_gid)  # a group known here, nobody in it
    with pytest.raises(ConfigError):
        load_receivers(path)
