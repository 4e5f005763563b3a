"""Safe targets: an address that is not public unicast is refused when an endpoint is registered
and again when it is called (nothing connects to it), and the connect and read timeouts each end
an attempt on their own, with the reason on the delivery."""

import socket
import threading

import pytest

from reviewapp.core.roles import Role
from reviewapp.webhooks.models import Endpoint
from reviewapp.webhooks.services import delivery_attempt, endpoint_create, endpoint_test_send
from tests.factories import make_user

pytestmark = pytest.mark.django_db

PUBLIC = "93.184.215.14"
HOST = "hooks.example.com"
# Each address, and the kind its refusal names.
REFUSED = [
    pytest.param("224.0.0.1", "multicast", id="multicast-v4"),
    pytest.param("ff02::1", "multicast", id="multicast-v6"),
    pytest.param("240.0.0.1", "reserved", id="reserved"),
    pytest.param("0.0.0.0", "unspecified", id="unspecified-v4"),
    pytest.param("::", "unspecified", id="unspecified-v6"),
    pytest.param("::ffff:127.0.0.1", "loopback", id="mapped-loopback"),
    pytest.param("::ffff:10.0.0.1", "private", id="mapped-private"),
    pytest.param("2002:7f00:1::", "loopback", id="6to4-loopback"),
]


def url_to(host: str, port: int = 8080) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/hook"


@pytest.fixture
def dns(monkeypatch):
    """The resolver (outside the system), answering the address set for a name."""
    answers: dict[str, str] = {}
    resolve = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in answers:
            return resolve(host, port, *args, **kwargs)
        address = answers[host]
        if ":" in address:
            return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


@pytest.fixture
def connects(monkeypatch):
    """Every address this process opens a TCP connection to (observed, then made)."""
    seen: list[tuple] = []
    connect = socket.socket.connect

    def observed(sock, address):
        seen.append(address)
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", observed)
    return seen


def attempt(endpoint: Endpoint, user):
    delivery = endpoint_test_send(endpoint=endpoint, user=user)
    delivery_attempt(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    return delivery


@pytest.mark.parametrize(("address", "kind"), REFUSED)
def test_registering_a_refused_address_is_400_naming_url(api, address, kind):
    manager = make_user(Role.MANAGER)
    response = api(manager).post(
        "/api/v1/webhooks/", {"url": url_to(address), "events": ["outcome.decided"]}, format="json"
    )
    assert response.status_code == 400
    assert f"{kind} address" in response.json()["url"][0]
    assert not Endpoint.objects.exists()


@pytest.mark.parametrize(("address", "kind"), REFUSED)
def test_a_name_resolving_to_a_refused_address_at_delivery_is_never_called(
    dns, connects, address, kind
):
    manager = make_user(Role.MANAGER)
    dns[HOST] = PUBLIC  # public when registered
    endpoint = endpoint_create(user=manager, url=url_to(HOST), events=["outcome.decided"])
    dns[HOST] = address  # rebound before the delivery
    delivery = attempt(endpoint, manager)
    assert delivery.attempts == 1 and delivery.last_status_code is None
    assert delivery.last_error.startswith("refused:"), delivery.last_error
    assert f"{kind} address" in delivery.last_error
    assert connects == []


class Silent:
    """A receiver that accepts a connection, reads the request and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, _ = self.sock.accept()
        with conn:
            conn.recv(65536)
            self.done.wait(60)

    def close(self):
        self.done.set()
        self.sock.close()


class FullBacklog:
    """A listening socket that never accepts, its backlog filled: the kernel drops further
    connection requests, so a connect neither succeeds nor is refused."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers = []
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", self.port))
            self.fillers.append(filler)

    def close(self):
        for filler in self.fillers:
            filler.close()
        self.sock.close()


@pytest.fixture
def local(settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_TOTAL_TIMEOUT_SECONDS = 20  # out of the way: each case is one timeout
    settings.WEBHOOK_CONNECT_TIMEOUT_SECONDS = 20
    settings.WEBHOOK_READ_TIMEOUT_SECONDS = 20
    return settings


def test_a_receiver_that_never_answers_fails_on_the_read_timeout(local, connects):
    local.WEBHOOK_READ_TIMEOUT_SECONDS = 0.2
    manager = make_user(Role.MANAGER)
    silent = Silent()
    try:
        endpoint = endpoint_create(
            user=manager, url=url_to("127.0.0.1", silent.port), events=["outcome.decided"]
        )
        delivery = attempt(endpoint, manager)
    finally:
        silent.close()
    assert ("127.0.0.1", silent.port) in connects  # it did connect: the read is what timed out
    assert delivery.attempts == 1 and delivery.last_status_code is None
    assert delivery.last_error.startswith("ReadTimeoutError"), delivery.last_error
    assert delivery.state == "pending"  # retried like any failure


def test_a_receiver_that_never_accepts_fails_on_the_connect_timeout(local):
    local.WEBHOOK_CONNECT_TIMEOUT_SECONDS = 0.2
    manager = make_user(Role.MANAGER)
    backlog = FullBacklog()
    try:
        endpoint = endpoint_create(
            user=manager, url=url_to("127.0.0.1", backlog.port), events=["outcome.decided"]
        )
        delivery = attempt(endpoint, manager)
    finally:
        backlog.close()
    assert delivery.attempts == 1 and delivery.last_status_code is None
    assert delivery.last_error.startswith("ConnectTimeoutError"), delivery.last_error
    assert delivery.state == "pending"
