"""Applications that sign people in through CertGate, for integrators to copy: an OpenID
Connect relying party (``examples.oidc_app``) and a CAS 3.0 service (``examples.cas_app``).
Not installed with CertGate; run from the repository root with ``python -m examples.<name>``."""
