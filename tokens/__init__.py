"""The client side of a USB-key login: PKCS#11 tokens, PC/SC readers and the local signing agent."""
