"""Testing support shipped with the package, for this project and for platform teams.

* :mod:`simulator.testing.handle`: :class:`SimulatorHandle`, the addresses and credentials
  of one running simulator, whatever started it (embedded, a URL, a container).
* :mod:`simulator.testing.plugin`: the pytest plugin (entry point ``banksim``): fixtures
  ``banksim``, ``banksim_control``, ``banksim_reset``, ``bank_api``, ``banksim_sftp``,
  ``platform_client``; invariants after each test; a trail of events and files on failure.
* :mod:`simulator.testing.embedded`: ``banksim serve`` in a background thread.
* :mod:`simulator.testing.control`: a typed client of the control API.
* :mod:`simulator.testing.container`: ``BankSimulatorContainer`` for testcontainers
  (needs the ``containers`` extra and a Docker engine).
"""
