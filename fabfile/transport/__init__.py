"""How actions reach a machine: commands as data, the one runner, the SSH session."""
