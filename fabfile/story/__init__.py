"""The deploy's story both targets share: images, lock, ledger, health, undo, prune."""
