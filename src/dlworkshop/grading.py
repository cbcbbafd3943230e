"""Constants shared by the nbgrader configuration and the course's own graders."""

#: stderr chunks matching this are warnings or progress bars, not failures. nbgrader gives a
#: grade cell zero for any stderr output; ``nbgrader_config.py`` feeds this to ``IgnorePattern``.
HARMLESS_STDERR_PATTERN = r"(Warning:|warnings\.warn|it/s\]|s/it\]|\d+%\|)"
