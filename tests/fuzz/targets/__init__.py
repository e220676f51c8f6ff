"""One module per fuzz target.

Each module defines ``setup()`` (called once, after instrumentation),
``one_input(data: bytes)`` (raises only on a bug), ``seeds()`` (inputs that
reach deep before the fuzzer learns anything) and optionally
``custom_mutator(data, max_size, seed)`` for libFuzzer.
"""

NAMES = ("packet", "flow_text", "vhost_protocol", "vring", "jsonrpc")
