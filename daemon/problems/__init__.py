"""Problem management: problem records, their store, API, result section and review report."""
