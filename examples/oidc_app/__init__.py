"""An OpenID Connect relying party signing people in through CertGate (see README.md)."""
