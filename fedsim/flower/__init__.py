"""Flower apps of fedsim: the ClientApp, the ServerApp and the simulation launcher."""
