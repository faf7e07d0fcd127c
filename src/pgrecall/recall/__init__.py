"""Recall: embed the query, then one SQL statement that scopes, filters, ranks and fuses."""
