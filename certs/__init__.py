"""CertGate's certificate engine: pure X.509 logic with no Flask, no database and no clock reads.

Path validation, revocation (CRL, OCSP), identity extraction, mapping rules and Chinese identifier
checksums. Time is always passed in (``at=``).
"""
