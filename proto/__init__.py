"""Wire formats and shared contracts: no I/O, no asyncio."""
