"""OwnTracks over MQTT on a real Mosquitto: stored, acknowledged after commit, ACL enforced."""

from __future__ import annotations

import base64
import getpass
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import func, select

from service.areas.broker import acl, add_users, hash_password, phones, set_password
from service.areas.features import create_fence, create_route, geometry_limits, new_fence, new_route
from service.areas.units import assign, create_unit
from service.config import Settings
from service.ingest.mqtt import device_of, parse_url, waypoint_commands
from service.schemas import AssignmentIn, GeofenceIn, PatrolRouteIn, UnitCreate
from service.store.db import Store, make_engine
from service.store.models import PatrolRoute, Ping, Unit
from tests.helpers import (
    PATROLI,
    along,
    circle_feature,
    cli_env,
    free_port,
    route_feature,
    run_patroli,
)
from tests.qrcodes import decode_terminal, owntracks_config

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
PASSWD = shutil.which("mosquitto_passwd")
PHONE = "polres/hp-07"
SIBLING = "polres/hp-08"  # another phone of the same OwnTracks user
OTHER = "lantas/hp-01"

# Skipped locally without Mosquitto; under CI (which installs it) they run, and fail without it.
needs_mosquitto = pytest.mark.skipif(
    not os.environ.get("CI") and not (Path(MOSQUITTO).exists() and PASSWD),
    reason="mosquitto and mosquitto_passwd needed",
)


def _location(i: int) -> bytes:
    """An OwnTracks location message, `i` seconds into a fixed minute."""
    tst = int(time.time()) - 600 + i
    body = {"_type": "location", "lat": -1.2379 + i * 1e-5, "lon": 116.8529, "tst": tst, "acc": 5}
    return json.dumps(body).encode()


def _wait_port(port: int, up: bool = True, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            listening = s.connect_ex(("127.0.0.1", port)) == 0
        if listening == up:
            return
        time.sleep(0.05)
    raise AssertionError(f"port {port} {'never opened' if up else 'still open'}")


class Mosquitto:
    """A private broker: password file, ACL and persistence in a folder, restartable."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            # Started as root, Mosquitto would drop to its own user and not read this folder.
            f"user {getpass.getuser()}\n"
            "allow_anonymous false\n"
            f"password_file {folder / 'passwd'}\n"
            f"acl_file {folder / 'acl'}\n"
            "persistence true\n"
            f"persistence_location {folder}/\n"
            f"log_dest file {folder / 'mosquitto.log'}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)])
        _wait_port(self.port)

    def reload(self) -> None:
        """Re-read the password and ACL files, as `kill -HUP` does for an operator."""
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)
        time.sleep(0.5)

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)  # saves its persistence file on the way out
            self.process.wait(10)
            self.process = None
            _wait_port(self.port, up=False)


class PatroliMqtt:
    """A running `patroli mqtt` process and its output lines."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            [*PATROLI, "mqtt"],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 30.0) -> None:
        """Wait until a line of output holds `text`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            assert self.process.poll() is None, "".join(self.lines)
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} in: {''.join(self.lines)}")


@contextmanager
def _patroli_mqtt(env: dict[str, str], cwd: Path) -> Iterator[PatroliMqtt]:
    patroli = PatroliMqtt(env, cwd)
    try:
        patroli.wait_for("subscribed to")
        yield patroli
    finally:
        if patroli.process.poll() is None:
            patroli.process.kill()
        patroli.process.wait(10)
        patroli._reader.join(5)
        print("".join(patroli.lines))  # shown when the test fails


def _publish(
    port: int, user: str, password: str, topic: str, payloads: list[bytes]
) -> list[mqtt.ReasonCode]:
    """Publish at QoS 1 (MQTT 5) and return the broker's reason code for each message."""
    codes: dict[int, mqtt.ReasonCode] = {}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(user, password)
    client.on_publish = lambda _c, _u, mid, code, _p: codes.__setitem__(mid, code)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for payload in payloads]
        for info in infos:
            info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()
    return [codes[info.mid] for info in infos]


def _connect_code(port: int, user: str, password: str) -> mqtt.ReasonCode:
    result: list[mqtt.ReasonCode] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(user, password)
    client.on_connect = lambda _c, _u, _f, code, _p: result.append(code)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        deadline = time.monotonic() + 10
        while not result and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        client.disconnect()
        client.loop_stop()
    return result[0]


def _received(port: int, user: str, password: str, topic: str) -> list[mqtt.MQTTMessage]:
    """What a subscriber to `topic` gets within two seconds (retained messages)."""
    got: list[mqtt.MQTTMessage] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.username_pw_set(user, password)
    client.on_connect = lambda c, _u, _f, _code, _p: c.subscribe(topic, qos=1)
    client.on_message = lambda _c, _u, message: got.append(message)
    client.connect("127.0.0.1", port)
    client.loop_start()
    time.sleep(2)
    client.disconnect()
    client.loop_stop()
    return got


def _critical_sites(store: Store, settings: Settings) -> None:
    """The phone's unit patrols a route passing one critical site; another site is far off."""
    limits = geometry_limits(settings)
    with store.write() as session:
        route = create_route(
            session, new_route(PatrolRouteIn.model_validate(route_feature()), limits)
        )
        near, far = along(100), along(100, offset_m=3000)
        for name, (lon, lat) in (("Kantor KPU", near), ("Gudang logistik", far)):
            feature = circle_feature(lon, lat, name=name)
            create_fence(session, new_fence(GeofenceIn.model_validate(feature), limits))
        unit_id = session.scalar(select(Unit.id).where(Unit.device_id == PHONE))
        assert unit_id is not None
        assign(session, unit_id, AssignmentIn(patrol_route_id=route["id"]))


def _count(store: Store, device_id: str) -> int:
    with store.read() as session:
        query = select(func.count()).select_from(Ping).join(Unit, Ping.unit_id == Unit.id)
        return int(session.scalar(query.where(Unit.device_id == device_id)) or 0)


def _wait_count(store: Store, device_id: str, expected: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _count(store, device_id) >= expected:
            break
        time.sleep(0.1)
    assert _count(store, device_id) == expected


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """The database under test, holding an OwnTracks phone and another unit."""
    store = Store.from_url(database_url)
    with store.write() as session:
        for name, device_id in (("Polres 07", PHONE), ("Polres 08", SIBLING), ("Lantas 01", OTHER)):
            create_unit(session, UnitCreate(name=name, device_id=device_id))
    yield store
    store.dispose()


@pytest.fixture
def broker(
    store: Store, database_url: str, tmp_path: Path
) -> Iterator[tuple[Mosquitto, dict[str, str]]]:
    """A private Mosquitto whose users and ACL come from `patroli mqtt-users`; the passwords."""
    folder = tmp_path / "broker"
    folder.mkdir()
    made = run_patroli(
        "mqtt-users",
        "--acl",
        str(folder / "acl"),
        "--passwords",
        str(folder / "passwd"),
        env=cli_env(database_url),
        cwd=tmp_path,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    # The new passwords are shown once; the file holds them hashed, as mosquitto_passwd would.
    shown = made.stdout.split("shown only now):\n", 1)[1]
    passwords = dict(line.split(" ", 1) for line in shown.splitlines() if line)
    assert set(passwords) == {"patroli", PHONE, SIBLING, OTHER}
    stored = (folder / "passwd").read_text()
    assert all(f"{user}:$7$101$" in stored for user in passwords)
    assert not any(password in stored for password in passwords.values())
    mosquitto = Mosquitto(folder)
    mosquitto.start()
    yield mosquitto, passwords
    mosquitto.stop()


def _env(database_url: str, port: int, password: str) -> dict[str, str]:
    return cli_env(
        database_url,
        PATROLI_MQTT_URL=f"mqtt://patroli:{password}@127.0.0.1:{port}",
        PATROLI_MQTT_CLIENT_ID=f"patroli-test-{uuid.uuid4().hex[:8]}",
    )


@needs_mosquitto
def test_stored_acked_after_commit_and_nothing_lost_across_restarts(
    store: Store,
    broker: tuple[Mosquitto, dict[str, str]],
    database_url: str,
    tmp_path: Path,
) -> None:
    mosquitto, passwords = broker
    env = _env(database_url, mosquitto.port, passwords["patroli"])

    def phone(topic: str, payloads: list[bytes]) -> list[mqtt.ReasonCode]:
        return _publish(mosquitto.port, PHONE, passwords[PHONE], topic, payloads)

    topic = f"owntracks/{PHONE}"
    with _patroli_mqtt(env, tmp_path) as patroli:
        assert all(not code.is_failure for code in phone(topic, [_location(0)]))
        _wait_count(store, PHONE, 1)
        # An event message goes to the same unit (a device report, no ping).
        transition = {"_type": "transition", "event": "enter", "desc": "KPU", "tst": 1}
        phone(f"{topic}/event", [json.dumps(transition).encode()])
        patroli.process.kill()  # no goodbye: the broker keeps the session and queues for it

    # Queued while Patroli is down, then the broker restarts (its persistence keeps them).
    phone(topic, [_location(i) for i in range(1, 6)])
    mosquitto.stop()
    mosquitto.start()
    phone(topic, [_location(i) for i in range(6, 11)])
    assert _count(store, PHONE) == 1
    with _patroli_mqtt(env, tmp_path) as patroli:
        _wait_count(store, PHONE, 11)
        # The broker restarts under a running Patroli: it reconnects and goes on.
        mosquitto.stop()
        mosquitto.start()
        patroli.lines.clear()
        patroli.wait_for("subscribed to")
        phone(topic, [_location(11)])
        _wait_count(store, PHONE, 12)
        patroli.process.send_signal(signal.SIGTERM)
        assert patroli.process.wait(15) == 0
    assert _count(store, PHONE) == 12


@needs_mosquitto
def test_wrong_password_and_foreign_topic_refused_critical_sites_sent(
    store: Store,
    broker: tuple[Mosquitto, dict[str, str]],
    database_url: str,
    settings: Settings,
    tmp_path: Path,
) -> None:
    mosquitto, passwords = broker
    _critical_sites(store, settings)
    assert _connect_code(mosquitto.port, PHONE, "wrong").is_failure
    assert _connect_code(mosquitto.port, PHONE, passwords[PHONE]).value == 0
    env = _env(database_url, mosquitto.port, passwords["patroli"])
    with _patroli_mqtt(env, tmp_path) as patroli:
        # A phone may publish only as itself, not as another user's phone nor as a phone of
        # its own OwnTracks user: the broker refuses and nothing reaches Patroli.
        for topic in (f"owntracks/{OTHER}", f"owntracks/{SIBLING}"):
            [code] = _publish(mosquitto.port, PHONE, passwords[PHONE], topic, [_location(0)])
            assert code.is_failure  # MQTT 5: "Not authorized"
        # A message Patroli can never store is acknowledged and logged, not redelivered forever.
        _publish(mosquitto.port, PHONE, passwords[PHONE], f"owntracks/{PHONE}", [b"{oops"])
        patroli.wait_for(f"MQTT message on owntracks/{PHONE} refused: ")
        _publish(mosquitto.port, OTHER, passwords[OTHER], f"owntracks/{OTHER}", [_location(1)])
        _wait_count(store, OTHER, 1)
        patroli.wait_for("sent critical sites as waypoints to 3 phone(s)")
    assert _count(store, PHONE) == 0 and _count(store, SIBLING) == 0
    # The command topic keeps the regions (retained) for the phone, and only for it.
    cmd = f"owntracks/{PHONE}/cmd"
    [message] = _received(mosquitto.port, PHONE, passwords[PHONE], cmd)
    command = json.loads(message.payload)
    assert command["action"] == "setWaypoints"
    [region] = command["waypoints"]["waypoints"]
    assert region["desc"] == "Kantor KPU" and region["rad"] == 150
    assert _received(mosquitto.port, OTHER, passwords[OTHER], cmd) == []
    assert _received(mosquitto.port, SIBLING, passwords[SIBLING], cmd) == []


@needs_mosquitto
def test_mqtt_enrolment_qr_configures_a_phone_that_publishes(
    store: Store,
    broker: tuple[Mosquitto, dict[str, str]],
    database_url: str,
    tmp_path: Path,
) -> None:
    """The MQTT-mode QR code: a new broker password for this phone alone, which then reports."""
    mosquitto, passwords = broker
    with store.read() as session:
        unit_id = session.scalar(select(Unit.id).where(Unit.device_id == PHONE))
    env = cli_env(
        database_url,
        PATROLI_PUBLIC_URL="https://patroli.example.org",
        PATROLI_MQTT_PUBLIC_URL=f"mqtt://127.0.0.1:{mosquitto.port}",
        PATROLI_MQTT_PASSWORD_FILE=str(mosquitto.folder / "passwd"),
    )
    done = run_patroli("units", "enroll", str(unit_id), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    codes = [decode_terminal(block) for block in done.stdout.split("\n\n") if "█" in block]
    assert len(codes) == 3  # Traccar Client, OwnTracks over HTTP, OwnTracks over MQTT
    config = owntracks_config(codes[2])
    assert (config["mode"], config["host"], config["port"]) == (0, "127.0.0.1", mosquitto.port)
    assert config["username"] == PHONE and config["pubTopicBase"] == f"owntracks/{PHONE}"
    assert config["password"] not in (mosquitto.folder / "passwd").read_text()  # hashed
    mosquitto.reload()
    assert _connect_code(mosquitto.port, PHONE, passwords[PHONE]).is_failure  # the old QR
    assert _connect_code(mosquitto.port, SIBLING, passwords[SIBLING]).value == 0  # untouched
    with _patroli_mqtt(_env(database_url, mosquitto.port, passwords["patroli"]), tmp_path):
        [code] = _publish(
            mosquitto.port,
            config["username"],
            config["password"],
            config["pubTopicBase"],
            [_location(3)],
        )
        assert code.value == 0
        _wait_count(store, PHONE, 1)


@needs_mosquitto
def test_an_assignment_edit_sends_the_phone_its_new_sites(
    store: Store,
    broker: tuple[Mosquitto, dict[str, str]],
    database_url: str,
    settings: Settings,
    tmp_path: Path,
) -> None:
    """A running `patroli mqtt` sends new regions to the phones whose sites changed, only them."""
    mosquitto, passwords = broker
    _critical_sites(store, settings)
    env = {**_env(database_url, mosquitto.port, passwords["patroli"])}
    env["PATROLI_MQTT_WAYPOINTS_S"] = "0.3"
    cmd = f"owntracks/{SIBLING}/cmd"
    with _patroli_mqtt(env, tmp_path) as patroli:
        patroli.wait_for("sent critical sites as waypoints to 3 phone(s)")
        [before] = _received(mosquitto.port, SIBLING, passwords[SIBLING], cmd)
        assert json.loads(before.payload)["waypoints"]["waypoints"] == []
        with store.write() as session:  # the sibling joins the route past the KPU office
            route_id = session.scalar(select(PatrolRoute.id))
            unit_id = session.scalar(select(Unit.id).where(Unit.device_id == SIBLING))
            assert route_id is not None and unit_id is not None
            assign(session, unit_id, AssignmentIn(patrol_route_id=route_id))
        patroli.wait_for("sent critical sites as waypoints to 1 phone(s)")
    [after] = _received(mosquitto.port, SIBLING, passwords[SIBLING], cmd)
    [region] = json.loads(after.payload)["waypoints"]["waypoints"]
    assert region["desc"] == "Kantor KPU"


def test_waypoints_are_the_critical_sites_of_the_units_routes(
    store: Store, settings: Settings
) -> None:
    _critical_sites(store, settings)
    with store.read() as session:
        commands = waypoint_commands(session)
    assert set(commands) == {f"owntracks/{d}/cmd" for d in (PHONE, SIBLING, OTHER)}
    [region] = commands[f"owntracks/{PHONE}/cmd"]["waypoints"]["waypoints"]
    lon, lat = along(100)
    assert region["_type"] == "waypoint" and region["desc"] == "Kantor KPU"
    assert (region["lon"], region["lat"]) == (round(lon, 6), round(lat, 6))
    assert commands[f"owntracks/{OTHER}/cmd"]["waypoints"]["waypoints"] == []
    assert commands[f"owntracks/{SIBLING}/cmd"]["waypoints"]["waypoints"] == []


def test_topics_acl_and_password_file() -> None:
    assert device_of("owntracks/polres/hp-07", "owntracks") == "polres/hp-07"
    assert device_of("owntracks/polres/hp-07/event", "owntracks") == "polres/hp-07"
    assert device_of("owntracks/polres/hp-07/cmd", "owntracks") is None
    assert device_of("other/polres/hp-07", "owntracks") is None
    broker = parse_url("mqtt://patroli:s%40cret@broker:1884")
    assert (broker.host, broker.port, broker.username, broker.password) == (
        "broker",
        1884,
        "patroli",
        "s@cret",
    )
    assert parse_url("mqtts://h").port == 8883
    with pytest.raises(ValueError):
        parse_url("http://h")
    ids = ["polres/hp-07", "polres/hp-08", "p05", "a/b/c", "x/+", "x/#", "x/a:b", "x/a b"]
    # A phone per user name; a wildcard, `:` or space in a device_id would open other topics or
    # break the files, so such a unit gets no account.
    assert phones(ids) == ["polres/hp-07", "polres/hp-08"]
    text = acl(ids, "patroli")
    assert "user patroli\ntopic read owntracks/#" in text
    assert "user polres/hp-08\ntopic write owntracks/polres/hp-08\n" in text
    assert "topic write owntracks/polres/hp-08/event" in text and "p05" not in text
    assert "x/" not in text
    existing = "patroli:$7$hashed\n"
    made, added = add_users(existing, ["patroli", "polres/hp-07"])
    assert list(added) == ["polres/hp-07"] and made.startswith(
        "patroli:$7$hashed\npolres/hp-07:$7$"
    )
    replaced = set_password(made, "polres/hp-07", "new")
    assert replaced.count("polres/hp-07:") == 1 and replaced.startswith("patroli:$7$hashed\n")
    # Mosquitto's own format: the same salt and password give mosquitto_passwd's line.
    salt = base64.b64decode("bc9QbhgmQ4ShBnTY")
    assert hash_password("s3cret", salt) == (
        "$7$101$bc9QbhgmQ4ShBnTY$ytj4s/+Rn6MUIe8tiUxG4n5e3aDPnx4FEhx7jTF3hiSj9041ZRT7Q8E4yQVDOvZl"
        "9yit7TUihJ1YudMm/p5zXg=="
    )


def _machine_broker_up() -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", 1883)) == 0


@pytest.mark.skipif(not _machine_broker_up(), reason="no Mosquitto on 127.0.0.1:1883")
def test_machine_broker_publish_is_stored(store: Store, database_url: str, tmp_path: Path) -> None:
    """The machine's own Mosquitto (anonymous there), under a topic prefix of this test alone."""
    prefix = f"patroli-test-{uuid.uuid4().hex[:8]}"
    env = cli_env(
        database_url,
        PATROLI_MQTT_URL="mqtt://127.0.0.1:1883",
        PATROLI_MQTT_CLIENT_ID=prefix,
        PATROLI_MQTT_TOPIC_PREFIX=prefix,
    )
    with _patroli_mqtt(env, tmp_path):
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        client.connect("127.0.0.1", 1883)
        client.loop_start()
        try:
            client.publish(f"{prefix}/{PHONE}", _location(0), qos=1).wait_for_publish(10)
            client.publish(f"owntracks/{PHONE}", _location(1), qos=1).wait_for_publish(10)
        finally:
            client.disconnect()
            client.loop_stop()
        _wait_count(store, PHONE, 1)  # only its own prefix
    # Leave no persistent session behind on the shared broker.
    cleaner = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=prefix, clean_session=True)
    cleaner.connect("127.0.0.1", 1883)
    cleaner.loop_start()
    time.sleep(0.5)
    cleaner.disconnect()
    cleaner.loop_stop()


@contextmanager
def _writes_blocked(database_url: str, backend: str) -> Iterator[None]:
    """Hold a lock that makes every write of another process wait (or fail and be retried)."""
    if backend == "sqlite":
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            yield
            conn.execute("ROLLBACK")
        finally:
            conn.close()
        return
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn, conn.begin():
            conn.exec_driver_sql("LOCK TABLE pings IN ACCESS EXCLUSIVE MODE")
            yield
    finally:
        engine.dispose()


@needs_mosquitto
def test_crash_before_commit_means_redelivery(
    store: Store,
    broker: tuple[Mosquitto, dict[str, str]],
    database_url: str,
    backend: str,
    tmp_path: Path,
) -> None:
    mosquitto, passwords = broker
    env = _env(database_url, mosquitto.port, passwords["patroli"])
    with _patroli_mqtt(env, tmp_path) as patroli, _writes_blocked(database_url, backend):
        _publish(mosquitto.port, PHONE, passwords[PHONE], f"owntracks/{PHONE}", [_location(0)])
        time.sleep(2)  # delivered to Patroli, whose commit now waits for the lock
        patroli.process.kill()
    assert _count(store, PHONE) == 0
    with _patroli_mqtt(env, tmp_path):
        _wait_count(store, PHONE, 1)  # the broker delivered it again
