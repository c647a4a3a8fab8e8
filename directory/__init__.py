"""The directory of record: organisations, people and their positions."""
