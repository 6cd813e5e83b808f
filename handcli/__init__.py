"""handcli: neural rendering and reconstruction of human hands and hand-object scenes."""

__version__ = "0.1.0"
