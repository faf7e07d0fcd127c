"""Database access: schema, migrations, pool, and the embedded default server."""
