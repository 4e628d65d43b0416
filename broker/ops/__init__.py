"""Running a deployment: `broker init`, `broker doctor`, `broker deploy render`.

See docs/operations.md.
"""
