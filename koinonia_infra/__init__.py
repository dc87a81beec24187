"""koinonia-infra: N identical Render API services behind one edge, declared and verified."""

__version__ = "0.1.0"
