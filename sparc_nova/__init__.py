"""sparc-nova: privacy-aware VM checkpointing for OpenStack Nova."""
