"""Sync over Google Drive: the data owner's side of the syft-client protocol."""
