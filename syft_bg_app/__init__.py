"""syft-bg app: the one-pass background app for a SyftBox data owner."""

__version__ = "0.1.0"
