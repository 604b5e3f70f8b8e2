"""Experiments and tools built on the library: the accuracy benchmark, the demo, the training-step
benchmark and the synthetic street-scene generator. Nothing in the library imports from here."""
