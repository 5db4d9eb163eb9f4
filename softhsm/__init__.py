"""Test PKI and SoftHSM token provisioning, for tests and for integrators."""
