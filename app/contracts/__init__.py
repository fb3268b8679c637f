"""The shared language of the edge, the worker and downstream consumers."""
