"""Fixtures that make a real test PKI (softhsm.pki) with a fixed clock."""
