"""Fixtures that make real SoftHSM tokens in a private SOFTHSM2_CONF directory."""
