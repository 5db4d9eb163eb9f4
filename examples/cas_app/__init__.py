"""A CAS 3.0 service signing people in through CertGate (see README.md)."""
