"""Package discovery, so no list of packages is kept by hand.

Every package under ``src/`` ships as it is; ``migrations/`` (Alembic's place, at the top of the
repository) ships as ``pgrecall.migrations`` through the ``package-dir`` mapping in
pyproject.toml. Data files come from MANIFEST.in (``include-package-data``).
"""

from setuptools import find_packages, setup

migrations = find_packages(".", include=["migrations", "migrations.*"])
setup(packages=[*find_packages("src"), *(f"pgrecall.{name}" for name in migrations)])
