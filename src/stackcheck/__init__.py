"""stackcheck: acceptance and SLA tests for the hardened praxis/ecom Docker Compose stack."""

from pathlib import Path

__version__ = "0.1.0"


def project_root() -> Path:
    """The checkout this package runs from (src layout: two levels above this file)."""
    return Path(__file__).resolve().parents[2]
