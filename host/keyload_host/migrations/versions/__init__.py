"""The inventory's schema versions, oldest first."""
