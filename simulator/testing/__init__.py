"""Testing support shipped with the package: where a running simulator is and how to reach it.

* :mod:`simulator.testing.handle`: :class:`SimulatorHandle`, the addresses and credentials
  of one running simulator, whatever started it (embedded, a URL, a container).
"""
