"""Ingestion: validate, identify, embed (or defer), write in bulk; and changing one memory."""
