"""Jupyter's messaging protocol over ZeroMQ: wire format, channels, IOPub, activity, buffering."""
