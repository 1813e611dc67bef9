"""The console commands, one module each, named after its command.

- :mod:`pistond.cli.pistond`: ``pistond``, the daemon (and its operator subcommands).
- :mod:`pistond.cli.piston`: ``piston``, the command-line client.

``pistond-gateway`` is :mod:`pistond.gateway.__main__`, beside the rest of the gateway.
"""
