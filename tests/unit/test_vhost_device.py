"""vhost-user port options and the socket a dpdkvhostuser port listens on
(no frontend needed: the handshake is in test_vhost_protocol.py and the
integration tests)."""

import os
import socket
import stat

import pytest

from ovsd.netdev.base import NetdevError
from ovsd.netdev.vhost_user import device
from ovsd.netdev.vhost_user.device import VhostUserNetdev


@pytest.fixture
def sockdir(tmp_path, monkeypatch):
    monkeypatch.setattr(device, "SOCKET_DIR", str(tmp_path))
    return tmp_path


def server(name="vhu0", **options):
    return VhostUserNetdev(name, options, client=False)


def test_server_port_listens_with_the_mode_asked_for(sockdir):
    dev = server(**{"vhost-sock-mode": "0600", "vhost-sock-owner": "root:root"})
    try:
        st = os.stat(sockdir / "vhu0")
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        assert (st.st_uid, st.st_gid) == (0, 0)
        assert dev.state == "waiting" and not dev.link_up
        dev.reconfigure({"vhost-sock-mode": "0640"})
        assert stat.S_IMODE(os.stat(sockdir / "vhu0").st_mode) == 0o640
    finally:
        dev.close()
    assert not (sockdir / "vhu0").exists()


def test_stale_socket_of_a_dead_ovsd_is_replaced(sockdir):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(sockdir / "vhu0"))
    s.close()  # the file stays, nobody listens
    server().close()


def test_a_socket_someone_listens_on_is_not_taken(sockdir):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(sockdir / "vhu0"))
    s.listen(1)
    try:
        with pytest.raises(NetdevError, match="another process listens on"):
            server()
    finally:
        s.close()


def test_a_port_that_cannot_open_keeps_no_fd(sockdir):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(sockdir / "vhu0"))
    s.listen(1)
    try:
        before = len(os.listdir("/proc/self/fd"))
        for options in ({}, {"tx-retries-max": "99"}, {"vhost-sock-mode": "rw"}):
            with pytest.raises(NetdevError):
                server(**options)
        assert len(os.listdir("/proc/self/fd")) == before
    finally:
        s.close()


def test_a_file_in_the_way_is_not_removed(sockdir):
    (sockdir / "vhu0").write_text("mine")
    with pytest.raises(NetdevError, match="exists and is not a socket"):
        server()
    assert (sockdir / "vhu0").read_text() == "mine"


@pytest.mark.parametrize("client, options, match", [
    (True, {}, "needs options:vhost-server-path=PATH"),
    (False, {"vhost-server-path": "/tmp/x"}, "is for dpdkvhostuserclient ports"),
    (True, {"vhost-server-path": "/" + "x" * 120}, "unix sockets allow at most 107"),
    (False, {"vhost-sock-mode": "rw"}, "expected an octal file mode"),
    (False, {"vhost-sock-mode": "01777"}, "expected an octal file mode"),
    (False, {"vhost-sock-owner": "no-such-user-here"}, "no such user or group"),
    (False, {"vhost-sock-owner": "root:no-such-group-here"}, "no such user or group"),
])
def test_bad_options_say_what_to_do(sockdir, client, options, match):
    with pytest.raises(NetdevError, match=match):
        VhostUserNetdev("vhu0", options, client=client)
    assert not (sockdir / "vhu0").exists()


def test_client_port_needs_nothing_at_open(sockdir):
    dev = VhostUserNetdev("vhc0", {"vhost-server-path": str(sockdir / "qemu.sock")},
                          client=True)
    try:
        assert dev.state == "waiting" and dev.details()["mode"] == "client"
        assert dev.status()["socket"] == str(sockdir / "qemu.sock")
    finally:
        dev.close()
