"""Why packets are dropped: one list of reasons, counted where the drop
happens, per port (the input port for what the pipeline or the receive side
dropped, the output port for what could not be sent) and in total.

Names are what `ofctl drop-stats` prints; the descriptions say where the
packet was lost and what usually causes it.  Counting is per batch wherever
the reason is shared by a batch (a megaflow's packets, a transmit shortfall),
so the fast path pays one dictionary update per batch, not per packet.
"""

from __future__ import annotations

from collections import Counter

# The pipeline decided (the megaflow carries the reason).
TABLE_MISS = "table_miss"
DROP_ACTION = "drop_action"
NO_OUTPUT = "no_output"
OUTPUT_TO_INPUT_PORT = "output_to_input_port"
TTL_EXPIRED = "ttl_expired"
RESUBMIT_LOOP = "resubmit_loop"
# The datapath.
RUNT_FRAME = "runt_frame"
UPCALL_FAILED = "upcall_failed"
OUTPUT_PORT_UNKNOWN = "output_port_unknown"
OUTPUT_PORT_DOWN = "output_port_down"
TX_QUEUE_FULL = "tx_queue_full"
MTU_EXCEEDED = "mtu_exceeded"
# The ports.
RX_RING_OVERRUN = "rx_ring_overrun"
OVERSIZED_FRAME = "oversized_frame"
GUEST_RING_FULL = "guest_ring_full"
VHOST_DESCRIPTOR_ERROR = "vhost_descriptor_error"

REASONS: dict[str, str] = {
    TABLE_MISS: "no flow matched in an OpenFlow table (table-miss drops, as in OpenFlow 1.3)",
    DROP_ACTION: "a flow's actions were empty or `drop`",
    NO_OUTPUT: "the flows that matched had no output action for the packet",
    OUTPUT_TO_INPUT_PORT: "the only output was the input port (skipped unless written "
                          "output:in_port), or NORMAL learned the destination on the input port",
    TTL_EXPIRED: "dec_ttl on a packet whose TTL or hop limit was 1 or 0",
    RESUBMIT_LOOP: "resubmits looped or nested too deep: translation gave up",
    RUNT_FRAME: "a frame shorter than an Ethernet header",
    UPCALL_FAILED: "the slow path could not translate the packet (see ovsd.log)",
    OUTPUT_PORT_UNKNOWN: "the output port is not (or no longer) in the datapath",
    OUTPUT_PORT_DOWN: "the output port cannot send now (link down, guest not ready)",
    TX_QUEUE_FULL: "the output port's transmit ring was full",
    MTU_EXCEEDED: "the frame is longer than the output port's MTU allows",
    RX_RING_OVERRUN: "the receive ring was full when the frame arrived (the PMD fell behind)",
    OVERSIZED_FRAME: "a guest sent a frame longer than any Ethernet frame ovsd carries",
    GUEST_RING_FULL: "the guest had no free receive buffers (not reading its ring)",
    VHOST_DESCRIPTOR_ERROR: "the guest broke its ring (bad descriptor): the port was reset",
}


class DropCounts(Counter):
    """(datapath port, reason) -> packets."""

    def add(self, port: int, reason: str, n: int = 1) -> None:
        self[(port, reason)] += n

    def take(self) -> list[list]:
        """[[port, reason, n], ...] since the last take (a PMD's report)."""
        out = [[port, reason, n] for (port, reason), n in self.items() if n]
        self.clear()
        return out
