"""The operator's tasks: status and history, logs and exec, setting up a server."""
