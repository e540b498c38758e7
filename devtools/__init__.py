"""Local tooling, never deployed: the CLI, migrations runner, dev server, local app, demo and stand-ins for services."""
