"""The participant services (inventory, shipping, payment) and their shared kit."""
