"""Test harness: real servers on free ports, our services as processes, socket clients."""
