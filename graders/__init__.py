"""The instructor's grading tool for the course: ``python -m graders --help``."""
