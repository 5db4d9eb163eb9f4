"""Templates, static files and translations served by the gateway (no build step)."""
