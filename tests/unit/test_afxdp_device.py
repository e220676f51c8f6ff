"""afxdp port options and the choice of transmit socket (no kernel needed)."""

from __future__ import annotations

import pytest

from ovsd.netdev.afxdp.device import AfxdpConfig, tx_queue_for
from ovsd.netdev.base import NetdevError


def test_defaults_are_ovs_defaults():
    assert AfxdpConfig.from_options({}) == AfxdpConfig(1, "best-effort", True)


@pytest.mark.parametrize("options, config", [
    ({"n_rxq": "4"}, AfxdpConfig(4, "best-effort", True)),
    ({"xdp-mode": "generic", "use-need-wakeup": "false"}, AfxdpConfig(1, "generic", False)),
    ({"xdp-mode": "native-with-zerocopy", "use-need-wakeup": "True"},
     AfxdpConfig(1, "native-with-zerocopy", True)),
])
def test_options(options, config):
    assert AfxdpConfig.from_options(options) == config


@pytest.mark.parametrize("options, message", [
    ({"n_rxq": "0"}, "options:n_rxq='0': expected an integer from 1 to 64"),
    ({"n_rxq": "two"}, "options:n_rxq='two'"),
    ({"xdp-mode": "skb"}, "options:xdp-mode='skb': expected one of best-effort, "
                          "native-with-zerocopy, native, generic"),
    ({"use-need-wakeup": "yes"}, "options:use-need-wakeup='yes': expected true or false"),
])
def test_bad_options(options, message):
    with pytest.raises(NetdevError, match=message.replace("(", r"\(")):
        AfxdpConfig.from_options(options)


@pytest.mark.parametrize("n_pmds, n_queues, expected", [
    (1, 1, [(0, False)]),
    (2, 1, [(0, True), (0, True)]),
    (2, 2, [(0, False), (1, False)]),
    (3, 2, [(0, True), (1, False), (0, True)]),
    (1, 4, [(0, False)]),
])
def test_each_pmd_transmits_on_its_own_socket_unless_pmds_outnumber_queues(
        n_pmds, n_queues, expected):
    assert [tx_queue_for(r, n_pmds, n_queues) for r in range(n_pmds)] == expected
