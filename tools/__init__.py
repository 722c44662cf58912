"""Scripts beside the library: local PostgreSQL + MLflow services for `make services` and the
distributed test (the library itself never installs or starts system services)."""
