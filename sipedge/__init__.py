"""The Trunkline SIP edge worker.

`sipedge.sip` is the sans-IO protocol core: it parses and builds SIP messages, checks
digest credentials and keeps registrar state, never touching sockets or reading the clock
(time is passed in). A thin asyncio layer feeds it bytes.
"""

from . import compiled

# Before any module of the core is imported: an extension built from another source than
# the one beside it is not used (see sipedge.compiled).
compiled.install()
