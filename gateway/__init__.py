"""The CertGate gateway: a thin Flask face over the ``certs`` and ``tokens`` libraries."""
