"""The saga engine: generic, knows nothing about orders."""
