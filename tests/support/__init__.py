"""Test helpers that play real peers (a virtio guest driver, ...)."""
