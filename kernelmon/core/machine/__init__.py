"""This machine's processes and files: discovery, identity proofs, resource sampling."""
