"""The sans-IO SIP core: no sockets, no asyncio, no clock (``now`` is a parameter)."""
