"""Coverage-guided fuzz targets (atheris): ``python -m tests.fuzz.run TARGET``."""
