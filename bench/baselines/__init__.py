"""What the benchmarks compare Librarian with: a bare Celery app and a bare FastAPI app."""
