"""The sovereignty assessor (filled in below)."""
