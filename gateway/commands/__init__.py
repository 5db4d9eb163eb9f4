"""Operator command groups of the gateway (``certgate serve|trust|account|audit|cert``)."""
