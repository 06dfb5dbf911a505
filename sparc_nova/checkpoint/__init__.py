"""Checkpoint formats: reading and rewriting libvirt/QEMU memory
checkpoints. Knows nothing about the guest operating system.
"""
