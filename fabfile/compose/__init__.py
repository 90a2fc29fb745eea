"""The compose target: one server, blue/green slots behind an nginx edge."""
