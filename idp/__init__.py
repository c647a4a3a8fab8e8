"""The Flask application, its pages, the CLI, and the wiring of every service."""
