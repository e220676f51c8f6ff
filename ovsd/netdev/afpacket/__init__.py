"""Port type ``system`` over AF_PACKET with PACKET_MMAP rings.

``device.SystemNetdev`` is the control side of a port; ``rx.RxQueue`` and
``tx.TxQueue`` are what a PMD builds from an rx socket fd and from
``SystemNetdev.tx_info()``.
"""
